# Reference numbers from R's mclust, stored as fixtures so that gmmkit's CI needs no R.
#
# Run from the repository root:
#
#     Rscript benchmarks/mclust/make_reference.R
#
# Needs R with mclust (MASS ships with R). On Debian/Ubuntu:
#
#     apt-get install -y r-base-core r-cran-mclust
#
# Writes, under tests/fixtures/mclust/:
#
#   datasets/<name>.csv  the numeric data exactly as fitted (header row, 17 significant digits,
#                        no row names); every fit below is run on the data *read back* from
#                        this file, so the CSV and the reference numbers cannot drift apart.
#   reference.json       mclust's default BIC table (mclustBIC(X, G = 1:9)) for every data set,
#                        with df and the implied log-likelihood, the model Mclust(X) picks, the
#                        time Mclust(X) takes, and nMclustParams for a grid of models, d and G.
#   params.json          fitted parameters (pro, mean, sigma) and log-likelihoods of single
#                        Mclust(X, G = K, modelNames = model) fits, for checking a
#                        log-likelihood computed at mclust's own parameters. "loglik" is
#                        mclust's $loglik, which lags the returned parameters by one M-step;
#                        "loglik_at_params" is mclust's estep() log-likelihood at them.
#
# JSON is written by a small serializer below rather than jsonlite, because jsonlite caps
# numbers at 15 significant digits; here every double is written with the fewest digits
# (15, 16 or 17) that read back to the identical double.
#
# Randomness: mclustBIC/Mclust initialise from hierarchical clustering, which is deterministic,
# except that for n > mclust.options("subset") (2000 by default) the hierarchical clustering is
# run on a random subset of rows. Only GvHD.pos is that large; the seed is set to SEED before
# every mclustBIC/Mclust call so its numbers are reproducible too.

suppressPackageStartupMessages(library(mclust))

SEED <- 0L
OUT_DIR <- file.path("tests", "fixtures", "mclust")
DATA_DIR <- file.path(OUT_DIR, "datasets")
dir.create(DATA_DIR, recursive = TRUE, showWarnings = FALSE)

ALL_MODELS <- mclust.options("emModelNames")  # the 14 multivariate models, mclust's order
UNI_MODELS <- c("E", "V")
G_RANGE <- 1:9

# ---------------------------------------------------------------------------------------------
# Data sets: name -> numeric matrix with column names.
# ---------------------------------------------------------------------------------------------

mclust_data <- function(name, file = name) {
  # Load a data set shipped with mclust into a fresh environment (GvHD.pos lives in "GvHD").
  env <- new.env()
  utils::data(list = file, package = "mclust", envir = env)
  get(name, envir = env)
}

as_numeric_matrix <- function(x, columns = NULL) {
  x <- as.data.frame(x)
  if (!is.null(columns)) x <- x[, columns, drop = FALSE]
  stopifnot(all(vapply(x, is.numeric, logical(1))))
  m <- as.matrix(x)
  storage.mode(m) <- "double"
  rownames(m) <- NULL
  m
}

acidity <- mclust_data("acidity")
datasets <- list(
  faithful = as_numeric_matrix(datasets::faithful),  # eruptions, waiting
  iris = as_numeric_matrix(datasets::iris, 1:4),     # drop Species
  galaxies = as_numeric_matrix(data.frame(velocity = MASS::galaxies / 1000)),
  acidity = as_numeric_matrix(data.frame(acidity = as.numeric(acidity))),
  diabetes = as_numeric_matrix(mclust_data("diabetes"), c("glucose", "insulin", "sspg")),
  banknote = as_numeric_matrix(mclust_data("banknote"),
                               c("Length", "Left", "Right", "Bottom", "Top", "Diagonal")),
  thyroid = as_numeric_matrix(mclust_data("thyroid"), c("RT3U", "T4", "T3", "TSH", "DTSH")),
  wreath = as_numeric_matrix(mclust_data("wreath")),  # x1, x2
  chevron = as_numeric_matrix(mclust_data("chevron"), c("x", "y")),  # drop class
  GvHD.pos = as_numeric_matrix(mclust_data("GvHD.pos", file = "GvHD"))  # CD4, CD8b, CD3, CD8
)

format_exact <- function(x) {
  # Each double with the fewest significant digits (15, 16 or 17) that read back identically;
  # 17 always suffices, fewer keep the files readable (3.6, not 3.6000000000000001).
  stopifnot(all(is.finite(x)))
  out <- sprintf("%.15g", x)
  for (digits in 16:17) {
    redo <- as.numeric(out) != x
    out[redo] <- sprintf(paste0("%.", digits, "g"), x[redo])
  }
  stopifnot(all(as.numeric(out) == x))
  out
}

write_dataset <- function(name, m) {
  # Write round-trip-exact text, then read back and insist on bit-identical values.
  path <- file.path(DATA_DIR, paste0(name, ".csv"))
  txt <- matrix(format_exact(as.vector(m)), nrow = nrow(m))
  lines <- c(paste(colnames(m), collapse = ","), apply(txt, 1, paste, collapse = ","))
  writeLines(lines, path, useBytes = TRUE)
  back <- as.matrix(utils::read.csv(path, check.names = FALSE, colClasses = "numeric"))
  rownames(back) <- NULL
  stopifnot(identical(dim(back), dim(m)), identical(colnames(back), colnames(m)),
            identical(unname(back), unname(m)))
  back
}

for (name in names(datasets)) {
  datasets[[name]] <- write_dataset(name, datasets[[name]])
}

# ---------------------------------------------------------------------------------------------
# Minimal JSON writer with round-trip-exact doubles.
# ---------------------------------------------------------------------------------------------

json_number <- function(x) {
  if (is.na(x)) return("null")
  if (is.integer(x)) return(as.character(x))
  format_exact(x)
}

json_string <- function(x) {
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("\"", "\\\"", x, fixed = TRUE)
  paste0("\"", x, "\"")
}

# Values: a named list is an object, an unnamed list is an array, a length-1 atomic vector is a
# scalar, and arrays of numbers are written as unnamed lists (see as_rows() below).
to_json <- function(x, indent = 0L) {
  pad <- strrep(" ", indent + 2L)
  end <- strrep(" ", indent)
  if (is.list(x)) {
    if (length(x) == 0L) return(if (is.null(names(x))) "[]" else "{}")
    # Containers of scalars go on one line, containers of containers one element per line.
    flat <- all(vapply(x, function(e) !is.list(e), logical(1)))
    if (!is.null(names(x))) {
      items <- vapply(names(x), function(k) {
        paste0(json_string(k), ": ", to_json(x[[k]], indent + 2L))
      }, character(1))
      if (flat) return(paste0("{", paste(items, collapse = ", "), "}"))
      return(paste0("{\n", paste0(pad, items, collapse = ",\n"), "\n", end, "}"))
    }
    items <- vapply(x, to_json, character(1), indent = indent + 2L)
    if (flat) return(paste0("[", paste(items, collapse = ", "), "]"))
    return(paste0("[\n", paste0(pad, items, collapse = ",\n"), "\n", end, "]"))
  }
  stopifnot(length(x) == 1L)
  if (is.character(x)) return(json_string(x))
  if (is.logical(x)) return(if (is.na(x)) "null" else if (x) "true" else "false")
  json_number(x)
}

write_json <- function(x, path) {
  writeLines(to_json(x), path, useBytes = TRUE)
}

as_row <- function(v) as.list(unname(as.double(v)))          # vector -> [..]
as_rows <- function(m) lapply(seq_len(nrow(m)), function(i) as_row(m[i, ]))  # matrix -> [[..]]

# ---------------------------------------------------------------------------------------------
# reference.json: BIC tables, best model, timing.
# ---------------------------------------------------------------------------------------------

bic_table <- function(X) {
  set.seed(SEED)
  mclustBIC(X, G = G_RANGE)  # default models: all 14 for d > 1, E and V for d = 1
}

time_mclust <- function(X) {
  # Elapsed time of Mclust(X) with defaults; median of 3 runs (1 run for n > 5000).
  runs <- if (nrow(X) > 5000) 1L else 3L
  times <- numeric(runs)
  fit <- NULL
  for (r in seq_len(runs)) {
    set.seed(SEED)
    times[r] <- system.time(fit <- Mclust(X, verbose = FALSE))[["elapsed"]]
  }
  list(seconds = round(stats::median(times), 3), fit = fit)  # system.time() has ms resolution
}

reference <- list(
  mclust_version = as.character(utils::packageVersion("mclust")),
  R_version = R.version.string,
  datasets = list()
)

for (name in names(datasets)) {
  X <- datasets[[name]]
  n <- nrow(X)
  d <- ncol(X)
  bic <- bic_table(X)
  fits <- list()
  for (model in colnames(bic)) {
    per_k <- list()
    for (G in as.integer(rownames(bic))) {
      b <- bic[as.character(G), model]
      df <- as.integer(nMclustParams(model, d, G))
      per_k[[as.character(G)]] <- list(
        loglik = if (is.na(b)) NA_real_ else (b + df * log(n)) / 2,
        bic = if (is.na(b)) NA_real_ else as.double(b),
        df = df
      )
    }
    fits[[model]] <- per_k
  }
  top_name <- names(pickBIC(bic, k = 1))  # top of summary(bic), e.g. "EEE,3"
  parts <- strsplit(top_name, ",", fixed = TRUE)[[1]]
  timed <- time_mclust(X)
  # Mclust(X) must agree with the BIC table's top entry.
  stopifnot(timed$fit$modelName == parts[1], timed$fit$G == as.integer(parts[2]),
            isTRUE(all.equal(timed$fit$bic, max(bic, na.rm = TRUE), tolerance = 1e-12)))
  reference$datasets[[name]] <- list(
    n = as.integer(n),
    d = as.integer(d),
    file = paste0("datasets/", name, ".csv"),
    fits = fits,
    best = list(model = parts[1], K = as.integer(parts[2]), bic = as.double(timed$fit$bic)),
    mclust_seconds = as.double(timed$seconds)
  )
  cat(sprintf("%-9s n=%5d d=%d  best %s,%s  BIC %.4f  Mclust %.3fs  (NA cells: %d)\n",
              name, n, d, parts[1], parts[2], timed$fit$bic, timed$seconds, sum(is.na(bic))))
}

n_params <- list()
for (d in c(1L, 2L, 3L, 4L, 6L)) {
  for (model in if (d == 1L) UNI_MODELS else ALL_MODELS) {
    for (G in c(1L, 2L, 3L, 5L, 9L)) {
      n_params[[length(n_params) + 1L]] <- list(
        model = model, d = d, G = G, df = as.integer(nMclustParams(model, d, G))
      )
    }
  }
}
reference$n_params <- n_params

write_json(reference, file.path(OUT_DIR, "reference.json"))

# ---------------------------------------------------------------------------------------------
# params.json: parameters of single fits, for the log-likelihood-at-mclust's-parameters test.
# ---------------------------------------------------------------------------------------------

param_cases <- list(
  list(datasets = c("faithful", "iris", "banknote", "wreath"), models = ALL_MODELS, K = 2:3),
  list(datasets = c("galaxies", "acidity"), models = UNI_MODELS, K = 2:4)
)

params <- list()
for (case in param_cases) {
  for (name in case$datasets) {
    X <- datasets[[name]]
    d <- ncol(X)
    for (model in case$models) {
      for (K in case$K) {
        set.seed(SEED)
        fit <- withCallingHandlers(
          tryCatch(Mclust(X, G = K, modelNames = model, verbose = FALSE),
                   error = function(e) {
                     cat(sprintf("params: %s %s K=%d: error: %s\n", name, model, K,
                                 conditionMessage(e)))
                     NULL
                   }),
          warning = function(w) {
            cat(sprintf("params: %s %s K=%d: warning: %s\n", name, model, K,
                        conditionMessage(w)))
            invokeRestart("muffleWarning")
          }
        )
        if (is.null(fit) || !is.finite(fit$loglik)) {
          cat(sprintf("params: mclust cannot fit %s %s K=%d, skipped\n", name, model, K))
          next
        }
        p <- fit$parameters
        mean <- matrix(p$mean, nrow = d)  # d x K, column k is component k
        if (d == 1L) {
          sigmasq <- rep_len(p$variance$sigmasq, K)  # "E" stores one value
          sigma <- lapply(sigmasq, function(s) list(list(as.double(s))))
        } else {
          sigma <- lapply(seq_len(K), function(k) as_rows(p$variance$sigma[, , k]))
        }
        # mclust's $loglik comes from the E-step *before* the final M-step, so it is the
        # log-likelihood one EM step behind the returned parameters (lower by up to about
        # mclust's tolerance, 1e-5 relative). The log-likelihood *at* the returned parameters,
        # from mclust's own E-step, is stored as well.
        at_params <- estep(data = X, modelName = model, parameters = p)$loglik
        stopifnot(is.finite(at_params), at_params >= fit$loglik - 1e-9 * abs(fit$loglik))
        params[[length(params) + 1L]] <- list(
          dataset = name,
          model = model,
          K = as.integer(K),
          loglik = as.double(fit$loglik),
          loglik_at_params = as.double(at_params),
          pro = as_row(p$pro),
          mean = as_rows(t(mean)),  # K x d, row k is component k
          sigma = sigma             # K x d x d
        )
      }
    }
  }
}

write_json(params, file.path(OUT_DIR, "params.json"))
cat(sprintf("wrote %s (%d data sets) and params.json (%d fits)\n",
            file.path(OUT_DIR, "reference.json"), length(reference$datasets), length(params)))

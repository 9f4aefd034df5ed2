# Serve model.rds over corral-external/1: length-prefixed JSON frames on stdin and stdout.
#
#   Rscript serve.R        (corral starts it in the model folder; see docs/external-models.md)
#
# Every frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The first frame out is the
# handshake; then each request {"columns": [...], "data": {column: [values]}} gets one answer
# {"predictions": [...], "probabilities": [[p0, p1], ...]} or {"error": "..."}. Requests are read with
# jsonlite (Debian's r-cran-jsonlite); answers are written here, with 17 significant digits so that every
# probability reaches corral exactly as R computed it. Anything R prints goes to stderr, which corral logs.

PROTOCOL <- "corral-external/1"

if (!requireNamespace("jsonlite", quietly = TRUE)) {
  message("serve.R needs the jsonlite package: apt-get install r-cran-jsonlite (or install.packages('jsonlite'))")
  quit(status = 1)
}

model <- readRDS("model.rds")
features <- c("education", "age", "parity", "induced", "spontaneous")

# P(case = 1) for each row of a data frame (NA where a feature is missing).
score <- function(model, newdata) {
  as.numeric(predict(model, newdata = newdata, type = "response"))
}

number <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))

answer_json <- function(probability) {
  if (length(probability) == 0) return('{"predictions":[],"probabilities":[]}')
  label <- as.numeric(probability >= 0.5)
  paste0(
    '{"predictions":[', paste(number(label), collapse = ","), "],",
    '"probabilities":[', paste0("[", number(1 - probability), ",", number(probability), "]", collapse = ","), "]}"
  )
}

error_json <- function(text, invalid_input = FALSE) {
  paste0('{"error":', jsonlite::toJSON(text, auto_unbox = TRUE), ',"invalid_input":', tolower(invalid_input), "}")
}

answer <- function(payload) {
  request <- tryCatch(jsonlite::fromJSON(rawToChar(payload)), error = function(e) NULL)
  if (is.null(request) || is.null(request$data)) return(error_json("the request is not a corral-external/1 request"))
  missing <- setdiff(features, names(request$data))
  if (length(missing) > 0) {
    return(error_json(paste("missing feature column(s):", paste(missing, collapse = ", ")), invalid_input = TRUE))
  }
  newdata <- as.data.frame(request$data[features], stringsAsFactors = FALSE, check.names = FALSE)
  newdata$education <- as.character(newdata$education)
  unknown <- setdiff(unique(na.omit(newdata$education)), model$xlevels$education)
  if (length(unknown) > 0) {
    return(error_json(paste0("unknown education level(s): ", paste(unknown, collapse = ", ")), invalid_input = TRUE))
  }
  probability <- tryCatch(score(model, newdata), error = function(e) conditionMessage(e))
  if (is.character(probability)) return(error_json(probability))
  if (anyNA(probability)) {
    rows <- paste(which(is.na(probability)) - 1, collapse = ", ")
    return(error_json(paste0("missing value(s) in row(s) ", rows, ": this model cannot score them"), invalid_input = TRUE))
  }
  answer_json(probability)
}

read_exactly <- function(con, n) {
  out <- raw(0)
  while (length(out) < n) {
    chunk <- readBin(con, "raw", n - length(out))
    if (length(chunk) == 0) return(NULL) # end of stream: corral closed the channel
    out <- c(out, chunk)
  }
  out
}

send <- function(con, text) {
  body <- charToRaw(enc2utf8(text))
  writeBin(length(body), con, size = 4, endian = "big")
  writeBin(body, con)
  flush(con)
}

serve <- function() {
  input <- file("stdin", open = "rb")
  output <- file("/dev/stdout", open = "wb")
  sink(stderr()) # stdout is the channel: print() and friends go to the log instead
  send(output, sprintf('{"protocol":"%s","ready":true,"name":"infert logistic regression (R %s)"}',
                       PROTOCOL, getRversion()))
  repeat {
    header <- read_exactly(input, 4)
    if (is.null(header)) break
    size <- sum(as.numeric(header) * 256^(3:0))
    payload <- if (size > 0) read_exactly(input, size) else raw(0)
    if (is.null(payload)) break
    send(output, answer(payload))
  }
}

serve()

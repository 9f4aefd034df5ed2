# Fit a logistic regression on R's bundled `infert` data and save it to model.rds, with the training data
# (features and target) in infert.csv for registration. Base R only; no network.
#
#   Rscript train.R
#
# infert (package datasets): 248 women from a matched case-control study of infertility after spontaneous
# and induced abortion. The target `case` is 1 for an infertile woman; the features are her education
# (a category), age, parity and the numbers of induced and spontaneous abortions.

features <- c("education", "age", "parity", "induced", "spontaneous")
data <- infert[, c(features, "case")]
data$education <- as.character(data$education)
for (column in c("age", "parity", "induced", "spontaneous", "case")) data[[column]] <- as.integer(data[[column]])

model <- glm(case ~ education + age + parity + induced + spontaneous, family = binomial(), data = data)
# what predict() needs stays; the copies of the training data go
model$data <- NULL
model$model <- NULL
model$y <- NULL
model$residuals <- NULL
model$fitted.values <- NULL
model$effects <- NULL
model$linear.predictors <- NULL
model$weights <- NULL
model$prior.weights <- NULL
attr(model$terms, ".Environment") <- globalenv()
environment(model$formula) <- globalenv()

saveRDS(model, "model.rds", version = 3)
write.csv(data, "infert.csv", row.names = FALSE)
probability <- predict(model, data, type = "response")
accuracy <- mean((probability >= 0.5) == (data$case == 1))
message(sprintf("wrote model.rds and infert.csv: %d rows, training accuracy %.3f", nrow(data), accuracy))

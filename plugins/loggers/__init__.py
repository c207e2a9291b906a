"""Built-in experiment loggers: TensorBoard and MLflow."""

"""Machine learning: random forest training and prediction, and ML models as job results."""

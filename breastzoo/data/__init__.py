"""Dataset indexing, patient-wise splits, the synthetic testbed and the tf.data pipeline."""

"""Fine-tuning: LoRA adapters trained on the model as autan runs it (`train`), the training data
(`data`), and the fine-tuning jobs the server runs (`jobs`)."""

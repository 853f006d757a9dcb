"""The trainer's loop: the inbox of misunderstood turns, annotation into nlu_data/, retraining, evaluation, and
model versions swapped into service without a pause (docs/training.md)."""

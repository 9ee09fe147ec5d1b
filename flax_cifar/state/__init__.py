"""What training changes: the train state (train_state) and the objective, optimizers and
learning-rate schedules that change it (optim). Below the run and the workdir."""

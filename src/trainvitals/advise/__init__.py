"""`trainvitals advise`: the one change a finished or crashed run should make next."""

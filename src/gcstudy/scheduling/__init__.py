"""How training is scheduled: batches of run folders, job resources, launchers."""

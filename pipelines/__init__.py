"""Orchestrator wrappers (KFP, later Argo/Hera) around the plain steps in `components`."""

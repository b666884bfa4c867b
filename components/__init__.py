"""Pipeline steps as plain typed functions. No module here imports an orchestrator."""

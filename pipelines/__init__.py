"""The orchestrators (KFP: kfp_pipeline.py, local.py; Argo Workflows through hera: argo_workflow.py,
argo_steps.py) around the plain steps in `components`, and compiling and submitting them."""

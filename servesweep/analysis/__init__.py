"""Turn the lake into decisions: SQL views (``views``), the report (``report``) and its charts (``charts``)."""

"""Load generation: synthetic prompts (datagen), SSE parsing, the streaming client, load patterns."""

"""talkfarm workers: the stage classes and the models they run (no Ray imports here)."""

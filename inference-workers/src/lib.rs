//! Inference workers: call OpenAI-compatible providers for inference jobs (issue #4; not built yet).

//! PoI scoring with DataFusion, Merkle checkpoints, verification and claims (issue #6; not built yet).

//! BSC log indexer with reorg detection (issue #5; not built yet).

//! A transactional writer for producers that are not consumers: a batch of records is
//! committed atomically or not at all.
//!
//! The indexer writes a range of chain events together with its cursor, the scorer
//! writes an epoch's scores together with its checkpoint event. A stable
//! `transactional.id` per writer fences a zombie predecessor and aborts whatever
//! transaction it left open.

use std::time::Duration;

use futures::future::try_join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::blocking;
use super::pipeline::wait_until_delivered;
use super::{KafkaArgs, OutputRecord};

/// Why a transactional batch failed.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// Another writer with the same transactional id took over, or the producer is
    /// otherwise unusable: stop.
    #[error("fatal Kafka error for transactional id {transactional_id:?} ({context}): {source}")]
    Fatal {
        transactional_id: String,
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The batch was aborted; trying again is safe.
    #[error("Kafka transaction aborted ({context}): {source}")]
    Aborted {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
}

/// Commits batches of records in Kafka transactions.
pub struct TransactionalWriter {
    producer: FutureProducer,
    transactional_id: String,
}

impl TransactionalWriter {
    /// Creates the producer and initialises transactions (fencing any predecessor).
    pub fn new(kafka: &KafkaArgs, transactional_id: &str) -> Result<Self, TransactionError> {
        let fatal = |context, source| TransactionError::Fatal {
            transactional_id: transactional_id.to_string(),
            context,
            source,
        };
        let producer: FutureProducer = kafka
            .transactional_producer_config(
                transactional_id,
                transactional_id,
                Duration::from_secs(60),
            )
            .create()
            .map_err(|e| fatal("creating producer", e))?;
        blocking(|| producer.init_transactions(Timeout::After(Duration::from_secs(30))))
            .map_err(|e| fatal("init_transactions", e))?;
        Ok(TransactionalWriter {
            producer,
            transactional_id: transactional_id.to_string(),
        })
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    fn error(&self, context: &'static str, source: KafkaError) -> TransactionError {
        let fatal = match &source {
            KafkaError::Transaction(rd) => rd.is_fatal(),
            _ => false,
        };
        if fatal {
            TransactionError::Fatal {
                transactional_id: self.transactional_id.clone(),
                context,
                source,
            }
        } else {
            TransactionError::Aborted { context, source }
        }
    }

    /// Writes `records` in one transaction. On error the transaction is aborted and
    /// none of the records is visible to read-committed consumers.
    pub async fn commit(&self, records: &[OutputRecord]) -> Result<(), TransactionError> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.error("begin_transaction", e))?;
        match self.send_all(records).await {
            Ok(()) => {
                wait_until_delivered(&self.producer).await;
                let committed = blocking(|| {
                    self.producer
                        .commit_transaction(Timeout::After(Duration::from_secs(60)))
                });
                if let Err(e) = committed {
                    let error = self.error("commit_transaction", e);
                    self.abort();
                    return Err(error);
                }
                Ok(())
            }
            Err(error) => {
                self.abort();
                Err(error)
            }
        }
    }

    async fn send_all(&self, records: &[OutputRecord]) -> Result<(), TransactionError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let mut future_record = FutureRecord::to(&record.topic).payload(&record.payload);
            if let Some(key) = &record.key {
                future_record = future_record.key(key);
            }
            if let Some(headers) = &record.headers {
                future_record = future_record.headers(headers.clone());
            }
            let delivery = loop {
                match self.producer.send_result(future_record) {
                    Ok(delivery) => break delivery,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        returned,
                    )) => {
                        future_record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(self.error("send", e)),
                }
            };
            deliveries.push(delivery);
        }
        let results = try_join_all(deliveries)
            .await
            .map_err(|_| self.error("delivery", KafkaError::Canceled))?;
        for result in results {
            if let Err((e, _)) = result {
                return Err(self.error("delivery", e));
            }
        }
        Ok(())
    }

    fn abort(&self) {
        if let Err(e) = blocking(|| {
            self.producer
                .abort_transaction(Timeout::After(Duration::from_secs(30)))
        }) {
            tracing::warn!(error = %e, transactional_id = %self.transactional_id, "abort_transaction failed");
        }
    }
}

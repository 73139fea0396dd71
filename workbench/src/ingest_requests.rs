//! `chorus-bench ingest-requests`: writes pre-signed chat-message requests for a load
//! test of the ingest API from another process (`infra/bench/ingest_load.sh` drives
//! `wrk` with them). Every request is unique (its own text, timestamp and EIP-191
//! signature; accounts rotate), so none is absorbed as a replay and each one is a real
//! write to Kafka.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use clap::Args;
use serde_json::json;

use chorus_ingest::auth::signing_message;

#[derive(Debug, Args)]
pub struct IngestRequestsArgs {
    /// Requests to write.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Accounts signing them (round robin; each has its own rate-limit bucket).
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    /// Conversations the messages go to (round robin).
    #[arg(long, default_value_t = 100)]
    conversations: u64,
    /// Output: one request per line, `<path>\t<JSON body>`.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: IngestRequestsArgs) -> anyhow::Result<()> {
    let signers: Vec<PrivateKeySigner> = (0..args.accounts.max(1))
        .map(|_| PrivateKeySigner::random())
        .collect();
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let timestamp = chrono::Utc::now().timestamp();
    for n in 0..args.count {
        let signer = &signers[(n % signers.len() as u64) as usize];
        let conversation = format!("load-{}", n % args.conversations.max(1));
        let mut body = json!({
            "author": signer.address().to_string(),
            "content": format!("load test message {n}"),
            "timestamp": timestamp,
            "conversation_id": conversation,
        });
        // The conversation id is part of what is signed, and travels in the path.
        let message = signing_message("chat.message", &body);
        let signature = signer.sign_message_sync(message.as_bytes())?;
        if let Some(object) = body.as_object_mut() {
            object.remove("conversation_id");
            object.insert("signature".into(), json!(signature.to_string()));
        }
        writeln!(out, "/v1/conversations/{conversation}/messages\t{body}")?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} signed requests from {} accounts to {} (valid for the signature window from now)",
        args.count,
        signers.len(),
        args.out.display()
    );
    Ok(())
}

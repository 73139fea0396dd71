//! `chorus-bench ingest-requests`: writes pre-signed chat-message requests for a load
//! test of the ingest API from another process (`infra/bench/ingest_load.sh` drives
//! `wrk` with them). Every request is unique (its own text, timestamp and EIP-712
//! signature; accounts rotate), so none is absorbed as a replay and each one is a real
//! write to Kafka. The conversations are created first, with the accounts as members.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use clap::Args;
use serde_json::json;

use chorus_runtime::kafka::{EventProducer, KafkaArgs};
use chorus_schemas::{AuthorKind, ConversationAction, ConversationUpdated, Envelope};

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
    /// The EIP-712 domain's chain id (the ingest API's `--chain-id`).
    #[arg(long, default_value_t = 56)]
    chain_id: u64,
    /// The EIP-712 domain's verifying contract (the ingest API's `--verifying-contract`).
    #[arg(long, default_value_t = alloy::primitives::Address::ZERO)]
    verifying_contract: alloy::primitives::Address,
}

/// Writes the requests, and (as the admin) creates their conversations with every
/// signing account as a member, so that each post is a member's.
pub async fn run(kafka: &KafkaArgs, args: IngestRequestsArgs) -> anyhow::Result<()> {
    let domain = chorus_signing::Domain {
        chain_id: args.chain_id,
        verifying_contract: args.verifying_contract,
    };
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
        let digest = chorus_ingest::typed_body::digest(&domain, "chat.message", &body)
            .map_err(anyhow::Error::msg)?;
        let signature = signer.sign_hash_sync(&digest)?;
        if let Some(object) = body.as_object_mut() {
            object.remove("conversation_id");
            object.insert("signature".into(), json!(signature.to_string()));
        }
        writeln!(out, "/v1/conversations/{conversation}/messages\t{body}")?;
    }
    out.flush()?;
    let producer = EventProducer::new(kafka, "bench-members", 10_000)?;
    let owner = "0x000000000000000000000000000000000000b0b0";
    let conversations = args.conversations.max(1);
    for c in 0..conversations {
        let conversation = format!("load-{c}");
        let mut changes = vec![(ConversationAction::Created, owner.to_owned())];
        for (n, signer) in signers.iter().enumerate() {
            if (n as u64) % conversations == c {
                let member = signer.address().to_string().to_lowercase();
                changes.push((ConversationAction::MemberAdded, member));
            }
        }
        for (action, member) in changes {
            producer
                .send(&Envelope::new(
                    "bench",
                    ConversationUpdated {
                        conversation_id: conversation.clone(),
                        action,
                        actor: owner.into(),
                        member_kind: Some(AuthorKind::Human),
                        member_id: Some(member),
                        title: None,
                    },
                ))
                .await?;
        }
    }
    eprintln!(
        "wrote {} signed requests from {} accounts to {} (valid for the signature window from now)",
        args.count,
        signers.len(),
        args.out.display()
    );
    Ok(())
}

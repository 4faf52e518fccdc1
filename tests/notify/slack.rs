//! Slack: the exact Block Kit message an incoming webhook receives, checked against Block
//! Kit's rules (block and element types, text objects, lengths, unique action ids, 50 blocks).

use std::collections::HashSet;

use defender_responder::notify::notifier::render;
use defender_responder::policy::notifications::ChannelKind;
use serde_json::Value;

use super::support::{chat_notifier, journal, notifications, planned, seed_pending, Receiver};

fn text_object(value: &Value, kinds: &[&str], max: usize, at: &str, problems: &mut Vec<String>) {
    let kind = value["type"].as_str().unwrap_or("");
    if !kinds.contains(&kind) {
        problems.push(format!("{at}: text type {kind:?} not in {kinds:?}"));
    }
    match value["text"].as_str() {
        Some(text) if !text.is_empty() && text.chars().count() <= max => {}
        Some(text) => problems.push(format!(
            "{at}: text of {} characters (1..={max})",
            text.chars().count()
        )),
        None => problems.push(format!("{at}: no text")),
    }
}

/// Every Block Kit rule the message must keep; empty when it keeps them all.
fn block_kit_problems(message: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if message["text"].as_str().is_none_or(str::is_empty) {
        problems.push("no fallback text".into());
    }
    let Some(blocks) = message["blocks"].as_array() else {
        return vec!["no blocks".into()];
    };
    if blocks.is_empty() || blocks.len() > 50 {
        problems.push(format!("{} blocks (1..=50)", blocks.len()));
    }
    let mut action_ids = HashSet::new();
    for (index, block) in blocks.iter().enumerate() {
        let at = format!("blocks[{index}]");
        match block["type"].as_str() {
            Some("header") => text_object(&block["text"], &["plain_text"], 150, &at, &mut problems),
            Some("section") => text_object(
                &block["text"],
                &["mrkdwn", "plain_text"],
                3000,
                &at,
                &mut problems,
            ),
            Some("context") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 10 {
                    problems.push(format!(
                        "{at}: {} context elements (1..=10)",
                        elements.len()
                    ));
                }
                for (e, element) in elements.iter().enumerate() {
                    text_object(
                        element,
                        &["mrkdwn", "plain_text"],
                        3000,
                        &format!("{at}.elements[{e}]"),
                        &mut problems,
                    );
                }
            }
            Some("actions") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    problems.push(format!("{at}: {} action elements (1..=25)", elements.len()));
                }
                for (e, button) in elements.iter().enumerate() {
                    let at = format!("{at}.elements[{e}]");
                    if button["type"] != "button" {
                        problems.push(format!("{at}: not a button"));
                    }
                    text_object(&button["text"], &["plain_text"], 75, &at, &mut problems);
                    match button["url"].as_str() {
                        Some(url) if url.len() <= 3000 && url::Url::parse(url).is_ok() => {}
                        _ => problems.push(format!("{at}: no valid url")),
                    }
                    match button["action_id"].as_str() {
                        Some(id) if id.len() <= 255 && action_ids.insert(id.to_string()) => {}
                        _ => {
                            problems.push(format!("{at}: action_id missing, too long or repeated"))
                        }
                    }
                    if let Some(style) = button.get("style") {
                        if style != "primary" && style != "danger" {
                            problems.push(format!("{at}: style {style}"));
                        }
                    }
                }
            }
            other => problems.push(format!("{at}: block type {other:?}")),
        }
    }
    problems
}

#[tokio::test]
async fn the_block_kit_message_is_sent_as_rendered_and_keeps_block_kit_rules() {
    let receiver = Receiver::start(&[]).await;
    let (policy, notifier) = chat_notifier(ChannelKind::Slack, &receiver);
    let plan = planned(&policy);
    let tasks = notifications(&plan);
    let (journal, _dir) = journal();
    let notifier = notifier.with_decisions(seed_pending(&journal, &plan).await);
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert_eq!(results.len(), 1);
    let log = receiver.log();
    assert_eq!(log.len(), 1);
    let body = &log[0].body;
    assert_eq!(
        body,
        &render(ChannelKind::Slack, &results[0].0.notification, "chat")
    );
    let problems = block_kit_problems(body);
    assert!(problems.is_empty(), "{problems:#?}");
    let text = body.to_string();
    // Four pending tasks with signed Approve and Reject links, and the portal and journal buttons.
    assert_eq!(
        text.matches("https://responder.example/api/decide?m=")
            .count(),
        8
    );
    assert_eq!(text.matches("\"style\":\"primary\"").count(), 4);
    assert!(
        text.contains("\"action_id\":\"portal\"") && text.contains("\"action_id\":\"journal\"")
    );

    // The checks are not a rubber stamp.
    let mut broken = body.clone();
    let actions = broken["blocks"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["type"] == "actions")
        .unwrap();
    actions["elements"][0]
        .as_object_mut()
        .unwrap()
        .remove("url");
    assert!(!block_kit_problems(&broken).is_empty());
}

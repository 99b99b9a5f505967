//! Channel names and topic templates.

use super::destination::ConfigError;

/// The default topic of frame messages.
pub const FRAMES: &str = "sd2/{channel}/frames";
/// The default topic of alerts.
pub const ALERTS: &str = "sd2/{channel}/alerts";

/// Checks that `channel` can name topics, payloads and a spool directory: not empty, not
/// `.` or `..`, without `/`, MQTT wildcards (`+`, `#`), braces or control characters.
pub fn check_channel(channel: &str) -> Result<(), ConfigError> {
    let bad = |reason: &'static str| ConfigError::Channel {
        channel: channel.to_owned(),
        reason,
    };
    if channel.is_empty() || channel == "." || channel == ".." {
        return Err(bad("a channel needs a name other than empty, . or .."));
    }
    if channel
        .chars()
        .any(|c| matches!(c, '/' | '+' | '#' | '{' | '}') || c.is_control())
    {
        return Err(bad(
            "a channel name may not hold /, +, #, braces or control characters",
        ));
    }
    Ok(())
}

/// `template` with `{channel}` replaced: a topic a message may be published to (not
/// empty, no wildcard, no other placeholder).
pub fn expand(template: &str, channel: &str) -> Result<String, ConfigError> {
    let bad = |reason: &'static str| ConfigError::Topic {
        template: template.to_owned(),
        reason,
    };
    let topic = template.replace("{channel}", channel);
    if topic.is_empty() {
        return Err(bad("a topic may not be empty"));
    }
    if topic.contains(['+', '#']) {
        return Err(bad(
            "a topic to publish to may not hold the wildcards + or #",
        ));
    }
    if topic.contains(['{', '}']) {
        return Err(bad("the only placeholder a topic knows is {channel}"));
    }
    if topic.chars().any(char::is_control) {
        return Err(bad("a topic may not hold control characters"));
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_fills_the_template() {
        assert_eq!(expand(FRAMES, "cam1").unwrap(), "sd2/cam1/frames");
        assert_eq!(expand("alerts", "cam1").unwrap(), "alerts");
    }

    #[test]
    fn wildcards_and_unknown_placeholders_are_refused() {
        for t in ["sd2/+/frames", "sd2/#", "sd2/{camera}", ""] {
            assert!(expand(t, "cam1").is_err(), "{t}");
        }
    }

    #[test]
    fn channels_that_would_split_a_topic_or_a_path_are_refused() {
        for c in ["", "..", "a/b", "a+b", "a#", "{channel}"] {
            assert!(check_channel(c).is_err(), "{c}");
        }
        check_channel("BBC One HD").unwrap();
    }
}

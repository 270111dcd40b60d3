//! Quoting for POSIX shells: every value from an inventory or playbook that reaches a shell goes
//! through here, so `; touch /tmp/pwned` stays a harmless string.

/// Quotes `s` as one POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    // Inside single quotes nothing is special but the quote itself, which becomes '\''.
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;
    use std::process::Command;

    fn echo_through_sh(value: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(value)))
            .output()
            .expect("sh runs");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn hostile_values_come_back_verbatim() {
        for v in [
            "; touch /tmp/c1m-pwned",
            "$(id)",
            "`id`",
            "a'b",
            "'",
            "",
            "x\ny",
            "* ?",
            "plain-value_1.2",
        ] {
            assert_eq!(echo_through_sh(v), v, "value {v:?}");
        }
        assert!(!std::path::Path::new("/tmp/c1m-pwned").exists());
    }
}

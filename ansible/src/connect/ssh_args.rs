//! `ansible_ssh_common_args` and `ansible_ssh_extra_args`: the OpenSSH command-line options
//! Ansible passes to `ssh`, read for what they say about the connection: `-o Keyword=value`
//! (any keyword `ssh_config` has), `-J jump` (ProxyJump), `-i key`, `-p port`, `-l user`, and
//! `-F file` (the configuration file to read instead of `~/.ssh/config`). Flags that change
//! nothing c1m does (`-C`, `-q`, `-v`, `-4`…) are read and left alone; `-o` options go through
//! the same checks as the configuration files.

/// What the arguments say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshArgs {
    /// `Keyword=value` options, in order (first wins, as on ssh's command line).
    pub options: Vec<(String, String)>,
    /// `-F`.
    pub config_file: Option<String>,
}

/// Options that take an argument, from ssh(1).
const WITH_ARG: &str = "BbcDEeFIiJLlmOopQRSWw";

/// Parses `text` (shell words) as ssh's options; `Err` names what cannot be read.
pub fn parse(text: &str, into: &mut SshArgs) -> Result<(), String> {
    let words = shlex::split(text)
        .ok_or_else(|| format!("cannot split {text:?} into words (unbalanced quotes?)"))?;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let Some(flags) = w.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(format!(
                "`{w}` is not an option (a host or command does not belong in ssh args)"
            ));
        };
        for (pos, c) in flags.char_indices() {
            if !WITH_ARG.contains(c) {
                continue;
            }
            // The argument is the rest of this word, or the next word.
            let rest = &flags[pos + c.len_utf8()..];
            let arg = if rest.is_empty() {
                let a = words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("-{c} without its argument"))?;
                i += 1;
                a
            } else {
                rest.to_string()
            };
            match c {
                'o' => {
                    let (k, v) = arg
                        .split_once('=')
                        .or_else(|| arg.split_once(char::is_whitespace))
                        .ok_or_else(|| format!("-o {arg:?}: expected Keyword=value"))?;
                    into.options
                        .push((k.trim().to_string(), v.trim().to_string()));
                }
                'J' => into.options.push(("ProxyJump".into(), arg)),
                'i' => into.options.push(("IdentityFile".into(), arg)),
                'p' => into.options.push(("Port".into(), arg)),
                'l' => into.options.push(("User".into(), arg)),
                'F' => into.config_file = Some(arg),
                _ => {}
            }
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_ansible_inventories_pass() {
        let mut a = SshArgs::default();
        parse(
            "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/k -oProxyJump=b -J 'u@c:2' -C -i ~/.ssh/k -F /cfg -q -p2222",
            &mut a,
        )
        .unwrap();
        assert_eq!(
            a.options,
            [
                ("StrictHostKeyChecking".to_string(), "yes".to_string()),
                ("UserKnownHostsFile".into(), "/k".into()),
                ("ProxyJump".into(), "b".into()),
                ("ProxyJump".into(), "u@c:2".into()),
                ("IdentityFile".into(), "~/.ssh/k".into()),
                ("Port".into(), "2222".into()),
            ]
        );
        assert_eq!(a.config_file.as_deref(), Some("/cfg"));
        assert!(parse("-o", &mut SshArgs::default()).is_err());
        assert!(parse("host", &mut SshArgs::default()).is_err());
        assert!(parse("-o 'unclosed", &mut SshArgs::default()).is_err());
    }
}

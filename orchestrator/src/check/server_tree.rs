//! The server under test, measured on its host from `/proc`: its whole process tree (the root
//! process and every descendant) — resident and proportional memory, CPU time, threads,
//! processes — and each process's open-file limit. One `sh`+`awk` per reading, on any host,
//! whatever the server is: c1m-server, nginx with its workers, a server the user started.

use serde::{Deserialize, Serialize};

/// One process of the tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeProcess {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among the processes that map them (a
    /// forked server's workers share their parent's pages).
    pub pss_bytes: u64,
    pub threads: u64,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// RLIMIT_NOFILE as the process has it (soft, hard); `None` when unreadable.
    pub nofile: Option<(u64, u64)>,
    /// Open file descriptors, when counted (the preflight counts them; samples do not).
    pub open_fds: Option<u64>,
}

/// One reading of the tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeSample {
    pub processes: Vec<TreeProcess>,
    /// Clock ticks per second on the host (`getconf CLK_TCK`).
    pub clk_tck: u64,
}

impl TreeSample {
    pub fn rss_bytes(&self) -> u64 {
        self.processes.iter().map(|p| p.rss_bytes).sum()
    }
    pub fn pss_bytes(&self) -> u64 {
        self.processes.iter().map(|p| p.pss_bytes).sum()
    }
    pub fn threads(&self) -> u64 {
        self.processes.iter().map(|p| p.threads).sum()
    }
    /// CPU seconds the whole tree has used.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks: u64 = self.processes.iter().map(|p| p.cpu_ticks).sum();
        ticks as f64 / self.clk_tck.max(1) as f64
    }
}

/// The script that prints the tree under `root`: a `clk` line, then one `proc` line per live
/// process (`pid ppid rss_kb pss_kb threads utime+stime nofile_soft nofile_hard open_fds comm`),
/// `-` for what it could not read. One `awk` does all of it: the shell expands
/// `/proc/[0-9]*/stat`, and awk reads each with `getline` (a process that exits meanwhile is
/// skipped, not an error), finds the descendants and reads their files. `clk_tck`, once known,
/// is printed as given: in a TCG guest each program started costs ~30 ms of its one vCPU, and
/// the sampler reads the tree every second (321 ms a reading with `getconf` and `cat` besides
/// awk, on the lab's server VM).
pub fn script(root: u32, count_fds: bool, clk_tck: Option<u64>) -> String {
    let clk = match clk_tck {
        Some(c) => format!("echo \"clk {c}\""),
        None => "echo \"clk $(getconf CLK_TCK 2>/dev/null || echo 100)\"".into(),
    };
    format!(
        r#"{clk}; exec awk -v root={root} -v fds={fds} 'BEGIN {{
for (i = 1; i < ARGC; i++) {{
   if ((getline s < ARGV[i]) <= 0) {{ close(ARGV[i]); continue }}
   close(ARGV[i]); split(s, w, " "); pid = w[1]
   c = s; sub(/^[^(]*\(/, "", c); sub(/\) [A-Za-z] .*$/, "", c); gsub(/[ \t]/, "_", c)
   sub(/^.*\) /, "", s); n = split(s, f, " "); if (f[1] == "Z" || f[1] == "X") continue
   ppid[pid] = f[2]; cpu[pid] = f[12] + f[13]; comm[pid] = c }}
  if (!(root in ppid)) exit 3
  tree[root] = 1; grown = 1
  while (grown) {{ grown = 0; for (p in ppid) if (!(p in tree) && (ppid[p] in tree)) {{ tree[p] = 1; grown = 1 }} }}
  for (p in tree) {{
    rss = "-"; th = "-"; pss = "-"; soft = "-"; hard = "-"; open = "-"
    file = "/proc/" p "/status"
    while ((getline l < file) > 0) {{ split(l, w, " "); if (w[1] == "VmRSS:") rss = w[2]; if (w[1] == "Threads:") th = w[2] }}
    close(file)
    file = "/proc/" p "/smaps_rollup"
    while ((getline l < file) > 0) {{ split(l, w, " "); if (w[1] == "Pss:") pss = w[2] }}
    close(file)
    file = "/proc/" p "/limits"
    while ((getline l < file) > 0) if (l ~ /^Max open files/) {{ split(l, w, " "); soft = w[4]; hard = w[5] }}
    close(file)
    if (fds) {{ cmd = "ls /proc/" p "/fd 2>/dev/null | wc -l"; cmd | getline open; close(cmd) }}
    print "proc", p, ppid[p], rss, pss, th, cpu[p], soft, hard, open, comm[p]
  }}
}}' /proc/[0-9]*/stat 2>/dev/null"#,
        fds = u8::from(count_fds)
    )
}

/// Parses what [`script`] printed; `None` when the root process was not found.
pub fn parse(text: &str) -> Option<TreeSample> {
    let mut s = TreeSample {
        clk_tck: 100,
        ..Default::default()
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["clk", t] => s.clk_tck = t.parse().unwrap_or(100),
            ["proc", pid, ppid, rss, pss, th, cpu, soft, hard, open, comm @ ..] => {
                let num = |x: &str| x.parse::<u64>().ok();
                // `unlimited` is no cap from the rlimit.
                let lim = |x: &str| num(x).or((x == "unlimited").then_some(u64::MAX));
                s.processes.push(TreeProcess {
                    pid: pid.parse().ok()?,
                    ppid: ppid.parse().unwrap_or(0),
                    comm: comm.join(" "),
                    rss_bytes: num(rss).unwrap_or(0) * 1024,
                    pss_bytes: num(pss).unwrap_or(0) * 1024,
                    threads: num(th).unwrap_or(1),
                    cpu_ticks: num(cpu).unwrap_or(0),
                    nofile: lim(soft).zip(lim(hard)),
                    open_fds: num(open),
                });
            }
            _ => {}
        }
    }
    (!s.processes.is_empty()).then(|| {
        s.processes.sort_by_key(|p| p.pid);
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample(root: u32, fds: bool) -> Option<TreeSample> {
        sample_at(root, fds, None)
    }

    fn sample_at(root: u32, fds: bool, clk: Option<u64>) -> Option<TreeSample> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script(root, fds, clk))
            .output()
            .unwrap();
        parse(&String::from_utf8_lossy(&out.stdout))
    }

    #[test]
    fn a_real_tree_with_children_and_threads() {
        // sh → two sleeps: a root with two children, measured as the real kernel shows them.
        let mut root = Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & sleep 30 & wait")
            .spawn()
            .unwrap();
        let pid = root.id();
        let mut tree = None;
        for _ in 0..50 {
            tree = sample(pid, true).filter(|t| t.processes.len() == 3);
            if tree.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // A sampler's reading, with the clock rate known: the same tree, no fds counted.
        let sampled = sample_at(pid, false, Some(250));
        let _ = Command::new("pkill")
            .args(["-P", &pid.to_string()])
            .status();
        let _ = root.kill();
        let _ = root.wait();
        let tree = tree.expect("sh and its two sleeps");
        let sampled = sampled.expect("the same tree, sampled");
        assert_eq!(sampled.clk_tck, 250);
        assert_eq!(
            sampled.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            tree.processes.iter().map(|p| p.pid).collect::<Vec<_>>()
        );
        assert!(sampled.processes.iter().all(|p| p.open_fds.is_none()));
        assert_eq!(tree.processes[0].pid, pid);
        assert!(tree.processes.iter().filter(|p| p.comm == "sleep").count() == 2);
        assert!(tree
            .processes
            .iter()
            .all(|p| p.rss_bytes > 0 && p.pss_bytes > 0));
        assert!(tree.processes.iter().all(|p| p.nofile.is_some()));
        assert!(tree
            .processes
            .iter()
            .all(|p| p.open_fds.is_some_and(|n| n >= 3)));
        assert_eq!(tree.threads(), 3);
        assert!(tree.clk_tck > 0);
    }

    #[test]
    fn a_missing_root_is_none() {
        assert!(sample(u32::MAX - 7, false).is_none());
    }

    #[test]
    fn odd_command_names_do_not_shift_fields() {
        let text = "clk 100\nproc 42 1 2048 1024 3 17 1024 524288 - my (odd) name\n";
        let t = parse(text).unwrap();
        let p = &t.processes[0];
        assert_eq!(
            (p.rss_bytes, p.pss_bytes, p.threads, p.cpu_ticks, p.nofile),
            (2048 * 1024, 1024 * 1024, 3, 17, Some((1024, 524288)))
        );
        assert_eq!(p.comm, "my (odd) name");
        assert_eq!(p.open_fds, None);
    }
}

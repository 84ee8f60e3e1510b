//! The documentation stays inside the repository: every relative link and `#anchor` in
//! README.md, docs/*.md and assets/graphiql/README.md resolves (the file exists; the anchor is
//! a heading's GitHub slug), and none of them cites a document a reader of the repository
//! cannot open (the product spec's sections, the upstream seeds, issue numbers).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a reader follows, relative to the repository root.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("assets/graphiql/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a docs entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| {
            path.strip_prefix(root())
                .expect("under the root")
                .to_path_buf()
        })
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks, line by line (numbered from 1), with inline code
/// spans blanked: links and headings shown as code are not links or headings.
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::with_capacity(line.len());
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                kept.push(c);
            } else if !in_code {
                kept.push(c);
            }
        }
        out.push((index + 1, kept));
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped (but `-` and `_`), spaces
/// to `-`. Inline code keeps its text; a link keeps its text.
fn slug(heading: &str) -> String {
    let text = strip_links(heading);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `[text](target)` → `text`.
fn strip_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every heading's anchor in `text`, with GitHub's `-1`, `-2` suffixes for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim());
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The targets of inline links `[text](target)` in `line`.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        // `[text](target "title")`: the target is the first word.
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &after[end..];
    }
    targets
}

/// Everything wrong with the links of the document at `path` (relative to the root) whose
/// text is `text`; `read` gives the text of another repository file, if it exists.
fn broken_links(
    path: &Path,
    text: &str,
    read: &dyn Fn(&Path) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut problems = Vec::new();
    let dir = path.parent().unwrap_or(Path::new(""));
    for (number, line) in prose(text) {
        for target in link_targets(&line) {
            if target.is_empty()
                || target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let at = format!("{}:{number}: ({target})", path.display());
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file_path = if file.is_empty() {
                path.to_path_buf()
            } else {
                match normalize(&dir.join(file)) {
                    Some(resolved) => resolved,
                    None => {
                        problems.push(format!("{at}: leaves the repository"));
                        continue;
                    }
                }
            };
            if !exists(&file_path) {
                problems.push(format!("{at}: {} does not exist", file_path.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let Some(target_text) = read(&file_path) else {
                    problems.push(format!("{at}: an anchor into a file that is not text"));
                    continue;
                };
                if !anchors(&target_text).contains(anchor) {
                    problems.push(format!(
                        "{at}: no heading of {} has the anchor #{anchor}",
                        file_path.display()
                    ));
                }
            }
        }
    }
    (checked, problems)
}

/// `a/b/../c` → `a/c`; `None` when the path climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::Normal(part) => parts.push(part),
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Text that cites something outside the repository.
const OUTSIDE_REFERENCES: &[&str] = &["SPEC §", "SPEC.md", "../shared/", "seeds/", "seed 0"];

fn outside_references(path: &Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for needle in OUTSIDE_REFERENCES {
            if line.contains(needle) {
                found.push(format!("{}:{}: {needle:?}", path.display(), index + 1));
            }
        }
        // "issue 11", "issue #4": an issue tracker a reader of the repository may not see.
        let lower = line.to_lowercase();
        for (at, _) in lower.match_indices("issue ") {
            let next = lower[at + 6..].trim_start_matches('#');
            if next.starts_with(|c: char| c.is_ascii_digit()) {
                found.push(format!("{}:{}: an issue number", path.display(), index + 1));
            }
        }
    }
    found
}

fn read_repo_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(root().join(path)).ok()
}

fn repo_file_exists(path: &Path) -> bool {
    root().join(path).exists()
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves_inside_the_repository() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for path in documents() {
        let text = read_repo_file(&path).unwrap_or_else(|| panic!("{} exists", path.display()));
        let (n, mut found) = broken_links(&path, &text, &read_repo_file, &repo_file_exists);
        checked += n;
        problems.append(&mut found);
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    // README.md links every docs/ file, and the docs link each other and the code.
    assert!(checked >= 30, "only {checked} relative links checked");
}

#[test]
fn the_docs_cite_no_spec_section_seed_or_issue_outside_the_repository() {
    let mut found = Vec::new();
    for path in documents() {
        let text = read_repo_file(&path).unwrap_or_else(|| panic!("{} exists", path.display()));
        found.extend(outside_references(&path, &text));
    }
    assert!(
        found.is_empty(),
        "references a reader cannot follow:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_readme_links_every_document_in_docs() {
    let readme = read_repo_file(Path::new("README.md")).expect("README.md");
    let linked: BTreeSet<String> = prose(&readme)
        .iter()
        .flat_map(|(_, line)| link_targets(line))
        .map(|target| target.split('#').next().unwrap_or("").to_string())
        .collect();
    let docs: Vec<PathBuf> = documents()
        .into_iter()
        .filter(|path| path.starts_with("docs"))
        .collect();
    assert!(docs.len() >= 5, "docs/ holds {docs:?}");
    for doc in docs {
        let target = doc.to_str().expect("UTF-8 path");
        assert!(linked.contains(target), "README.md does not link {target}");
    }
}

#[test]
fn the_readme_shows_exactly_the_two_set_up_commands() {
    let readme = read_repo_file(Path::new("README.md")).expect("README.md");
    let section = readme
        .split_once("## The two commands")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a ```sh block under 'The two commands'");
    let commands: Vec<&str> = section
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|command| !command.is_empty())
        .collect();
    // The first runs the server (sandbox mode without a config), the second every test.
    assert_eq!(commands, ["cargo run --release", "cargo test"]);
}

/// The checker itself finds what it must: a missing file, a missing anchor, a repeated
/// heading's suffix, a link shown as code (ignored), a SPEC citation and an issue number.
#[test]
fn the_link_checker_reports_broken_links_and_outside_references() {
    let files: HashMap<&str, &str> = HashMap::from([
        (
            "docs/a.md",
            "# A\n## Same\n## Same\n## Time (UTC): `window` ok\n",
        ),
        ("README.md", ""),
    ]);
    let read = |p: &Path| files.get(p.to_str().unwrap_or("")).map(|t| t.to_string());
    let exists = |p: &Path| files.contains_key(p.to_str().unwrap_or(""));
    let text = "[ok](a.md#same-1) [ok](#time-utc-window-ok) [ok](../README.md)\n\
                [bad](a.md#nope) [bad](b.md) [bad](../../up.md)\n\
                `[code](c.md)` [web](https://example.com/x)\n```\n[fenced](d.md)\n```\n";
    let (checked, problems) = broken_links(Path::new("docs/a.md"), text, &read, &exists);
    assert_eq!(checked, 6, "{problems:?}");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("#nope"), "{problems:?}");
    assert!(
        problems[1].contains("docs/b.md does not exist"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("leaves the repository"),
        "{problems:?}"
    );

    let cited = outside_references(
        Path::new("x.md"),
        "as SPEC §4.7 says\nsee issue 11, item 5\nan issue of taste\nseeds/004.txt\n",
    );
    assert_eq!(cited.len(), 3, "{cited:?}");
}

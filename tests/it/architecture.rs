//! The layer rules of `ARCHITECTURE.md`, checked on the source: every module of `src/` may use
//! only modules of its own layer or of a layer below it, and no module may use a module that
//! (directly or through others) uses it back.
//!
//! The layers are read from `ARCHITECTURE.md` itself (the fenced block after the line that
//! mentions this file), so the document and the check cannot drift apart. A reference is any
//! `crate::…` path in code (in `use` lines, grouped `use crate::{…}` trees, and inline paths),
//! any `super::…` path (resolved against the file's module), and in `src/main.rs` any
//! `claudegate::…` path. Comments and string literals are skipped, so doc links do not count.
//! Inline `#[cfg(test)]` modules count like the code around them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer names, top first, from the fenced block that follows the line naming this test.
fn layers_from(doc: &str) -> Vec<String> {
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.contains("tests/it/architecture.rs"));
    lines.next();
    let mut lines = lines.skip_while(|l| !l.trim_start().starts_with("```"));
    lines.next();
    lines
        .take_while(|l| !l.trim_start().starts_with("```"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → `` (the crate root),
/// `src/main.rs` → `main` (the binary, its own top layer).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file with comments, string literals and character literals blanked out.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if let Some(body) = rest.strip_prefix("/*") {
            i = body.find("*/").map_or(b.len(), |n| i + 2 + n + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            let end = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            out.push_str("' '");
            i += char_literal_len(rest).unwrap_or(1);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, … at the start of `s`: the number of `#`s.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.bytes().take_while(|b| *b == b'#').count();
    (s.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a character literal at the start of `s` (`'a'`, `'\n'`, `'\u{200B}'`), or
/// `None` for a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'\\') {
        let close = s[2..].find('\'')?;
        return Some(close + 3);
    }
    let c = s[1..].chars().next()?;
    (s[1 + c.len_utf8()..].starts_with('\'')).then_some(2 + c.len_utf8())
}

/// Expands one `use` tree (`a::{b, c::{d, e}}`, `a::b as c`, `a::*`) into plain paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let Some(open) = tree.find('{') else {
            let item = tree.split(" as ").next().unwrap_or(tree);
            let item = item.split("as").next().unwrap_or(item);
            out.push(format!("{prefix}{item}"));
            return;
        };
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    go(&format!("{prefix}{head}"), &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < inner.len() {
            go(&format!("{prefix}{head}"), &inner[start..], out);
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out.into_iter()
        .map(|p| p.trim_end_matches("::self").to_string())
        .collect()
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every path the code names that starts with `anchor` (`crate::`, `super::`, `claudegate::`),
/// as the segments after it; grouped `use` trees are expanded.
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    paths_at(code, anchor).into_iter().map(|(_, p)| p).collect()
}

/// [`paths_after`], with the byte offset where each path starts.
fn paths_at(code: &str, anchor: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(n) = code[from..].find(anchor) {
        let at = from + n;
        from = at + anchor.len();
        if at > 0 && (is_ident_byte(b[at - 1]) || b[at - 1] == b':') {
            continue; // part of a longer path (`self::super::…`) or identifier
        }
        let rest = &code[at..];
        if rest[anchor.len()..].starts_with('{') {
            let mut depth = 0;
            let mut end = anchor.len();
            for (i, c) in rest[anchor.len()..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = anchor.len() + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            for p in expand_use(&rest[anchor.len()..end]) {
                out.push((at, p.split("::").map(str::to_string).collect()));
            }
        } else {
            let len = rest[anchor.len()..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len() - anchor.len());
            let path = rest[anchor.len()..anchor.len() + len].trim_end_matches(':');
            out.push((at, path.split("::").map(str::to_string).collect()));
        }
    }
    out
}

/// The child modules a file declares with `mod name;` (files of their own).
fn file_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            name.bytes().all(is_ident_byte).then(|| name.to_string())
        })
        .collect()
}

/// Inline modules (`mod tests { … }`): the byte span of each body and its name.
fn inline_modules(code: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..].find("mod ") {
        let at = from + n;
        from = at + 4;
        if at > 0 && is_ident_byte(b[at - 1]) {
            continue;
        }
        let rest = &code[at + 4..];
        let name_len = rest.bytes().take_while(|c| is_ident_byte(*c)).count();
        let after = rest[name_len..].trim_start();
        if name_len == 0 || !after.starts_with('{') {
            continue; // `mod name;`: a file module
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((open..end, rest[..name_len].to_string()));
    }
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<String>, segments: &[String]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The modules each module uses (edges of the module graph), excluding itself.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = fs::read_to_string(file).expect("readable source");
        let code = code_only(&text);
        let mut uses = BTreeSet::new();
        let anchor = if module == "main" {
            "claudegate::"
        } else {
            "crate::"
        };
        for segs in paths_after(&code, anchor) {
            if let Some(target) = resolve(&modules, &segs) {
                uses.insert(target);
            }
        }
        // `super::` names the parent of the module it is written in: for `a/b.rs` (module
        // `a::b`) that is `a`, for `a/mod.rs` (module `a`) the crate root, and inside an inline
        // `mod tests { … }` of `a/b.rs` it is `a::b` itself.
        let own: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let inline = inline_modules(&code);
        for (at, segs) in paths_at(&code, "super::") {
            let mut base = own.clone();
            base.extend(
                inline
                    .iter()
                    .filter(|(span, _)| span.contains(&at))
                    .map(|(_, name)| name.clone()),
            );
            base.pop();
            let mut segs = segs.as_slice();
            while segs.first().is_some_and(|s| s == "super") {
                base.pop();
                segs = &segs[1..];
            }
            let mut full = base;
            full.extend(segs.iter().cloned());
            if let Some(target) = resolve(&modules, &full) {
                uses.insert(target);
            }
        }
        // In a module's own file, `child::…` (a child declared with `mod child;`) is a use of
        // that child too: `pub use child::Item` makes the parent depend on it.
        for child in file_children(&code) {
            let anchor = format!("{child}::");
            let full = |tail: &[String]| {
                let mut p = own.clone();
                p.push(child.clone());
                p.extend(tail.iter().cloned());
                p
            };
            for segs in paths_after(&code, &anchor) {
                if let Some(target) = resolve(&modules, &full(&segs)) {
                    uses.insert(target);
                }
            }
        }
        uses.remove(&module);
        uses.remove("");
        graph.insert(module, uses);
    }
    graph
}

fn layer_of(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let low = t.low[v].min(t.low[w]);
                t.low.insert(v, low);
            } else if t.on.contains(w) {
                let low = t.low[v].min(t.index[w]);
                t.low.insert(v, low);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// What is wrong with a tree: upward uses, modules outside any layer, cycles.
fn violations(src: &Path, layers: &[String]) -> Vec<String> {
    let rank = |layer: &str| layers.iter().position(|l| l == layer);
    let graph = module_graph(src);
    let mut problems = Vec::new();
    for (module, uses) in &graph {
        if module.is_empty() {
            continue;
        }
        let Some(own) = rank(layer_of(module)) else {
            problems.push(format!(
                "{module}: its layer `{}` is not listed in ARCHITECTURE.md",
                layer_of(module)
            ));
            continue;
        };
        for target in uses {
            match rank(layer_of(target)) {
                // A lower rank is a higher layer (the list is top first).
                Some(r) if r < own => problems.push(format!(
                    "{module} (layer {}) uses {target} (layer {}), a higher layer",
                    layer_of(module),
                    layer_of(target)
                )),
                _ => {}
            }
        }
    }
    for scc in cycles(&graph) {
        problems.push(format!("import cycle among: {}", scc.join(", ")));
    }
    problems
}

#[test]
fn layers_point_down_and_nothing_cycles() {
    let doc = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let layers = layers_from(&doc);
    assert!(
        layers.len() >= 5 && layers.contains(&"base".to_string()),
        "could not read the layer list from ARCHITECTURE.md: {layers:?}"
    );
    let src = root().join("src");
    // Every top-level module of the library is a listed layer, and every layer exists.
    for layer in &layers {
        let exists = src.join(layer).is_dir() || src.join(format!("{layer}.rs")).is_file();
        assert!(
            exists,
            "ARCHITECTURE.md lists layer `{layer}`, which src/ does not have"
        );
    }
    let problems = violations(&src, &layers);
    assert!(
        problems.is_empty(),
        "{} layer rule violation(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself: a deliberate upward use and a deliberate cycle, in a scratch tree, are
/// both caught; so are the forms a use can take (grouped, inline, `super::`).
#[test]
fn the_checker_catches_an_upward_use_and_a_cycle() {
    let dir = std::env::temp_dir().join(format!("claudegate-arch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    };
    write("lib.rs", "pub mod top;\npub mod low;\n");
    write(
        "top/mod.rs",
        "pub mod a;\npub mod b;\npub use crate::top::a::Thing;\n",
    );
    // `super::*` in an inline test module is `top::a` itself, not `top` (no cycle with top).
    write(
        "top/a.rs",
        "use super::b::Thing;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    );
    write(
        "top/b.rs",
        "// crate::low::nothing in a comment does not count\nfn f() { let s = \"crate::top::a\"; }\n",
    );
    write("low/mod.rs", "pub mod x;\n");
    write("low/x.rs", "use crate::{low, top::a::Thing};\n");
    let layers = vec!["top".to_string(), "low".to_string()];
    let problems = violations(&dir, &layers);
    assert_eq!(
        problems,
        vec!["low::x (layer low) uses top::a (layer top), a higher layer".to_string()],
        "exactly the upward use, nothing from comments or strings"
    );

    write("top/b.rs", "fn f() -> crate::top::a::Thing { todo!() }\n");
    let problems = violations(&dir, &layers);
    assert!(
        problems.contains(&"import cycle among: top::a, top::b".to_string()),
        "{problems:?}"
    );

    // A parent that re-exports from a child (`pub use b::Thing;`) while the child uses the
    // parent's items is a cycle too.
    write("top/b.rs", "use super::Shared;\npub struct Thing;\n");
    write(
        "top/mod.rs",
        "pub mod a;\npub mod b;\npub use b::Thing;\npub struct Shared;\n",
    );
    write("top/a.rs", "\n");
    let problems = violations(&dir, &layers);
    assert!(
        problems.contains(&"import cycle among: top, top::b".to_string()),
        "{problems:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}

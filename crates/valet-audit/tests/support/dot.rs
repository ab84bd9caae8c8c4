//! A parser for the DOT language subset Graphviz accepts in `digraph` files:
//! node, edge (->), attribute (graph/node/edge) and `ID = ID` statements,
//! bare or double-quoted IDs (with `\"` escapes). Anything else is an error,
//! so output that `dot` would reject fails the test.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Id(String),
    Sym(&'static str),
}

#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
    pub edges: Vec<(String, String, BTreeMap<String, String>)>,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = src.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '{' | '}' | '[' | ']' | ';' | ',' | '=' => {
                it.next();
                out.push(Tok::Sym(match c {
                    '{' => "{",
                    '}' => "}",
                    '[' => "[",
                    ']' => "]",
                    ';' => ";",
                    ',' => ",",
                    _ => "=",
                }));
            }
            '-' => {
                it.next();
                match it.next() {
                    Some('>') => out.push(Tok::Sym("->")),
                    other => return Err(format!("expected -> but found -{other:?}")),
                }
            }
            '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('"') => s.push('"'),
                            Some(other) => {
                                s.push('\\');
                                s.push(other);
                            }
                            None => return Err("unterminated escape".into()),
                        },
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(Tok::Id(s));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                let mut s = String::new();
                while let Some(&ch) = it.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' || ch == '.' {
                        s.push(ch);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Id(s));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn sym(&mut self, s: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Sym(x)) if x == s => Ok(()),
            other => Err(format!(
                "expected {s}, found {other:?} at token {}",
                self.pos
            )),
        }
    }
    fn id(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Id(s)) => Ok(s),
            other => Err(format!(
                "expected an ID, found {other:?} at token {}",
                self.pos
            )),
        }
    }
    fn attrs(&mut self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        while self.peek() == Some(&Tok::Sym("[")) {
            self.next();
            while self.peek() != Some(&Tok::Sym("]")) {
                let k = self.id()?;
                self.sym("=")?;
                let v = self.id()?;
                out.insert(k, v);
                if matches!(self.peek(), Some(Tok::Sym(";" | ","))) {
                    self.next();
                }
            }
            self.sym("]")?;
        }
        Ok(out)
    }
}

pub fn parse(src: &str) -> Result<Graph, String> {
    let mut p = P {
        toks: lex(src)?,
        pos: 0,
    };
    if p.id()? != "digraph" {
        return Err("not a digraph".into());
    }
    if matches!(p.peek(), Some(Tok::Id(_))) {
        p.next();
    }
    p.sym("{")?;
    let mut g = Graph::default();
    loop {
        match p.peek() {
            Some(Tok::Sym("}")) => {
                p.next();
                break;
            }
            Some(Tok::Sym(";")) => {
                p.next();
            }
            Some(Tok::Id(_)) => {
                let a = p.id()?;
                if matches!(a.as_str(), "graph" | "node" | "edge")
                    && p.peek() == Some(&Tok::Sym("["))
                {
                    p.attrs()?;
                } else if p.peek() == Some(&Tok::Sym("=")) {
                    p.next();
                    p.id()?;
                } else if p.peek() == Some(&Tok::Sym("->")) {
                    let mut chain = vec![a];
                    while p.peek() == Some(&Tok::Sym("->")) {
                        p.next();
                        chain.push(p.id()?);
                    }
                    let attrs = p.attrs()?;
                    for w in chain.windows(2) {
                        g.edges.push((w[0].clone(), w[1].clone(), attrs.clone()));
                    }
                } else {
                    let attrs = p.attrs()?;
                    g.nodes.entry(a).or_default().extend(attrs);
                }
            }
            other => return Err(format!("unexpected {other:?} at token {}", p.pos)),
        }
    }
    if p.pos != p.toks.len() {
        return Err("tokens after the closing }".into());
    }
    Ok(g)
}

//! Splits a filter expression into tokens, each with its 1-based column in
//! characters (what the error caret points at).

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokKind {
    /// A keyword, number, address, port name or range: everything made of
    /// `[A-Za-z0-9_.:-]`. Keywords are told apart by the parser.
    Word,
    And,
    Or,
    Not,
    LParen,
    RParen,
    Slash,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'s> {
    pub kind: TokKind,
    /// The token as written (for a `\word`, without the backslash).
    pub text: &'s str,
    /// 1-based column, in characters, of the token's first character.
    pub col: usize,
    /// Written `\word`: a name, never a keyword (tcpdump's `ip proto \tcp`).
    pub escaped: bool,
}

impl Token<'_> {
    /// Whether this token is the keyword `keyword`: an unescaped word,
    /// compared case-insensitively.
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == TokKind::Word && !self.escaped && self.text.eq_ignore_ascii_case(keyword)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_')
}

pub(super) fn lex(src: &str) -> Result<Vec<Token<'_>>, Error> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    let mut col = 0;
    while let Some((start, c)) = chars.next() {
        col += 1;
        let tok_col = col;
        let single = |kind, len: usize| Token {
            kind,
            text: &src[start..start + len],
            col: tok_col,
            escaped: false,
        };
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(single(TokKind::LParen, 1)),
            ')' => tokens.push(single(TokKind::RParen, 1)),
            '/' => tokens.push(single(TokKind::Slash, 1)),
            '!' if chars.peek().map(|&(_, c)| c) != Some('=') => {
                tokens.push(single(TokKind::Not, 1));
            }
            '&' | '|' => {
                if chars.peek().map(|&(_, n)| n) == Some(c) {
                    chars.next();
                    col += 1;
                    let kind = if c == '&' { TokKind::And } else { TokKind::Or };
                    tokens.push(single(kind, 2));
                } else {
                    let word = if c == '&' {
                        "'and' or '&&'"
                    } else {
                        "'or' or '||'"
                    };
                    return Err(Error::new(
                        tok_col,
                        format!("unexpected character '{c}' (use {word})"),
                    ));
                }
            }
            c if is_word_char(c) || c == '\\' => {
                let escaped = c == '\\';
                let text_start = if escaped { start + 1 } else { start };
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = chars.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    chars.next();
                    col += 1;
                    end = i + n.len_utf8();
                }
                let text = &src[text_start..end];
                if escaped && text.is_empty() {
                    return Err(Error::new(tok_col, "expected a name after '\\'".into()));
                }
                let kind = match text {
                    _ if escaped => TokKind::Word,
                    t if t.eq_ignore_ascii_case("and") => TokKind::And,
                    t if t.eq_ignore_ascii_case("or") => TokKind::Or,
                    t if t.eq_ignore_ascii_case("not") => TokKind::Not,
                    _ => TokKind::Word,
                };
                tokens.push(Token {
                    kind,
                    text,
                    col: tok_col,
                    escaped,
                });
            }
            '[' | ']' => {
                return Err(Error::new(
                    tok_col,
                    "byte-offset expressions such as 'ip[9]' are not supported".into(),
                ))
            }
            '=' | '<' | '>' | '!' => {
                return Err(Error::new(
                    tok_col,
                    format!("unexpected character '{c}' (comparisons are not supported)"),
                ))
            }
            _ => {
                return Err(Error::new(
                    tok_col,
                    format!("unexpected character '{}'", c.escape_debug()),
                ))
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokKind, &str, usize)> {
        lex(src)
            .expect("lexes")
            .into_iter()
            .map(|t| (t.kind, t.text, t.col))
            .collect()
    }

    #[test]
    fn tokens_and_columns() {
        use TokKind::*;
        assert_eq!(
            kinds("not(tcp&&port 80)||!\\udp AND net 10.0.0.0/8"),
            vec![
                (Not, "not", 1),
                (LParen, "(", 4),
                (Word, "tcp", 5),
                (And, "&&", 8),
                (Word, "port", 10),
                (Word, "80", 15),
                (RParen, ")", 17),
                (Or, "||", 18),
                (Not, "!", 20),
                (Word, "udp", 21),
                (And, "AND", 26),
                (Word, "net", 30),
                (Word, "10.0.0.0", 34),
                (Slash, "/", 42),
                (Word, "8", 43),
            ]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // 'é' is two bytes but one column.
        let e = lex("host é").unwrap_err();
        assert_eq!(e.column, 6);
        let toks = lex("\u{a0}tcp").unwrap();
        assert_eq!(toks[0].col, 2);
    }

    #[test]
    fn bad_characters() {
        assert_eq!(lex("tcp & udp").unwrap_err().column, 5);
        assert_eq!(lex("ip[9] = 6").unwrap_err().column, 3);
        assert_eq!(lex("len != 6").unwrap_err().column, 5);
        assert_eq!(lex("tcp | udp").unwrap_err().column, 5);
        assert_eq!(lex("ip proto \\ 6").unwrap_err().column, 10);
    }
}

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
    /// `/`: a prefix length, or division in arithmetic.
    Slash,
    LBracket,
    RBracket,
    /// `:` inside brackets (`tcp[0:2]`); elsewhere it is part of a word.
    Colon,
    Plus,
    /// `-` not inside a word (`80-90` and `tcp-syn` are words).
    Minus,
    Star,
    Percent,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    /// `=` or `==`.
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
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

fn is_word_char(c: char, in_brackets: bool) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || (c == ':' && !in_brackets)
}

pub(super) fn lex(src: &str) -> Result<Vec<Token<'_>>, Error> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    let mut col = 0;
    // Open '[': inside, ':' separates offset and size.
    let mut brackets = 0usize;
    while let Some((start, c)) = chars.next() {
        col += 1;
        let tok_col = col;
        let single = |kind, len: usize| Token {
            kind,
            text: &src[start..start + len],
            col: tok_col,
            escaped: false,
        };
        let next = chars.peek().map(|&(_, n)| n);
        // Two-character operators.
        let two = match (c, next) {
            ('&', Some('&')) => Some(TokKind::And),
            ('|', Some('|')) => Some(TokKind::Or),
            ('<', Some('<')) => Some(TokKind::Shl),
            ('>', Some('>')) => Some(TokKind::Shr),
            ('<', Some('=')) => Some(TokKind::Le),
            ('>', Some('=')) => Some(TokKind::Ge),
            ('=', Some('=')) => Some(TokKind::Eq),
            ('!', Some('=')) => Some(TokKind::Ne),
            _ => None,
        };
        if let Some(kind) = two {
            chars.next();
            col += 1;
            tokens.push(single(kind, 2));
            continue;
        }
        let one = match c {
            '(' => Some(TokKind::LParen),
            ')' => Some(TokKind::RParen),
            '/' => Some(TokKind::Slash),
            '!' => Some(TokKind::Not),
            '[' => Some(TokKind::LBracket),
            ']' => Some(TokKind::RBracket),
            ':' if brackets > 0 => Some(TokKind::Colon),
            '+' => Some(TokKind::Plus),
            '-' => Some(TokKind::Minus),
            '*' => Some(TokKind::Star),
            '%' => Some(TokKind::Percent),
            '&' => Some(TokKind::Amp),
            '|' => Some(TokKind::Pipe),
            '^' => Some(TokKind::Caret),
            '=' => Some(TokKind::Eq),
            '<' => Some(TokKind::Lt),
            '>' => Some(TokKind::Gt),
            _ => None,
        };
        if let Some(kind) = one {
            match kind {
                TokKind::LBracket => brackets += 1,
                TokKind::RBracket => brackets = brackets.saturating_sub(1),
                _ => {}
            }
            tokens.push(single(kind, 1));
            continue;
        }
        match c {
            c if c.is_whitespace() => {}
            c if (is_word_char(c, brackets > 0) && c != '-') || c == '\\' => {
                let escaped = c == '\\';
                let text_start = if escaped { start + 1 } else { start };
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = chars.peek() {
                    if !is_word_char(n, brackets > 0) {
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
        assert_eq!(lex("ip proto \\ 6").unwrap_err().column, 10);
        assert_eq!(lex("host é").unwrap_err().column, 6);
        assert_eq!(lex("tcp port 80 ; udp").unwrap_err().column, 13);
    }

    #[test]
    fn operators_brackets_and_words_with_dashes() {
        use TokKind::*;
        assert_eq!(
            kinds("tcp[13:1]&tcp-syn!=0 or ip[2:2]-20>=len<<1"),
            vec![
                (Word, "tcp", 1),
                (LBracket, "[", 4),
                (Word, "13", 5),
                (Colon, ":", 7),
                (Word, "1", 8),
                (RBracket, "]", 9),
                (Amp, "&", 10),
                (Word, "tcp-syn", 11),
                (Ne, "!=", 18),
                (Word, "0", 20),
                (Or, "or", 22),
                (Word, "ip", 25),
                (LBracket, "[", 27),
                (Word, "2", 28),
                (Colon, ":", 29),
                (Word, "2", 30),
                (RBracket, "]", 31),
                (Minus, "-", 32),
                (Word, "20", 33),
                (Ge, ">=", 35),
                (Word, "len", 37),
                (Shl, "<<", 40),
                (Word, "1", 42),
            ]
        );
        // Outside brackets ':' belongs to IPv6 and MAC addresses.
        assert_eq!(kinds("host ::1")[1], (Word, "::1", 6));
        assert_eq!(kinds("portrange 80-90")[1], (Word, "80-90", 11));
    }
}

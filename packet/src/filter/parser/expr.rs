//! Expressions: `and`/`or`/`not`, parentheses, relations and arithmetic
//! (`ip[0] & 0xf > 5`).

use super::*;

impl<'s> Parser<'s> {
    pub(super) fn peek(&self) -> Option<Token<'s>> {
        self.tokens.get(self.pos).copied()
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<Token<'s>> {
        self.tokens.get(self.pos + ahead).copied()
    }

    pub(super) fn col_of(&self, t: Option<Token<'_>>) -> usize {
        t.map_or(self.end_col, |t| t.col)
    }

    /// `after` is the token before the expression ('(' or none), for
    /// messages.
    pub(super) fn expr(&mut self, after: Option<Token<'s>>) -> Result<usize, Error> {
        let mut lhs = self.term(after)?;
        while let Some(t) = self.peek() {
            let node = match t.kind {
                TokKind::And | TokKind::Or => {
                    self.pos += 1;
                    let rhs = self.term(Some(t))?;
                    if t.kind == TokKind::And {
                        Node::And(lhs, rhs)
                    } else {
                        Node::Or(lhs, rhs)
                    }
                }
                TokKind::RParen => break,
                _ => {
                    let ops = if self.depth > 0 {
                        "'and', 'or' or ')'"
                    } else {
                        "'and' or 'or'"
                    };
                    return Err(Error::new(
                        t.col,
                        format!("expected {ops} before {}", describe(Some(t))),
                    ));
                }
            };
            lhs = self.push(node);
        }
        Ok(lhs)
    }

    pub(super) fn term(&mut self, mut after: Option<Token<'s>>) -> Result<usize, Error> {
        // Runs of `not` collapse to their parity.
        let mut negate = false;
        while let Some(t) = self.peek().filter(|t| t.kind == TokKind::Not) {
            self.pos += 1;
            negate = !negate;
            after = Some(t);
        }
        let atom = self.atom(after)?;
        Ok(if negate {
            self.push(Node::Not(atom))
        } else {
            atom
        })
    }

    /// Whether `t` can start an arithmetic expression.
    pub(super) fn starts_arith(&self, t: Token<'_>) -> bool {
        match t.kind {
            TokKind::LParen | TokKind::Minus => true,
            TokKind::Word => {
                t.is_word("len")
                    || (!t.escaped && named_constant(t.text).is_some())
                    || (!t.escaped && !matches!(parse_number(t.text), Ok(None)))
                    || (ProtoQ::of(&t).is_some()
                        && self.peek_at(1).is_some_and(|n| n.kind == TokKind::LBracket))
            }
            _ => false,
        }
    }

    /// `arith relop arith`, if the tokens at the cursor are one. `Ok(None)`
    /// (cursor unmoved) when they are not: a '(' that opens a boolean
    /// expression, a bare number that is an id (`port 80 or 443`).
    pub(super) fn try_relation(&mut self) -> Result<Option<usize>, Error> {
        let start = self.pos;
        let depth = self.depth;
        let lhs = match self.arith(0) {
            Ok(a) => a,
            Err(e) => {
                // Committed once a '[' or `len` was read, unless a '('
                // came first: `(ip[9] = 6)` is a parenthesized relation,
                // parsed again as a boolean expression.
                let committed = self.tokens[start].kind != TokKind::LParen
                    && self.tokens[start..self.pos.max(start)]
                        .iter()
                        .any(|t| t.kind == TokKind::LBracket || t.is_word("len"));
                if committed {
                    return Err(e);
                }
                self.pos = start;
                self.depth = depth;
                return Ok(None);
            }
        };
        let Some(op) = self.peek() else {
            return self.not_a_relation(start, &lhs);
        };
        let (cmp, negate) = match op.kind {
            TokKind::Gt => (Cmp::Gt, false),
            TokKind::Ge => (Cmp::Ge, false),
            TokKind::Eq => (Cmp::Eq, false),
            TokKind::Le => (Cmp::Gt, true),
            TokKind::Lt => (Cmp::Ge, true),
            TokKind::Ne => (Cmp::Eq, true),
            _ => return self.not_a_relation(start, &lhs),
        };
        self.pos += 1;
        let rhs = self.arith(0)?;
        for a in [&lhs, &rhs] {
            if stack_depth(&a.code) > MAX_ARITH_STACK {
                return Err(Error::new(a.col, "arithmetic expression too deep".into()));
            }
        }
        let rel_start = self.code.len();
        self.code.extend_from_slice(&lhs.code);
        let mid = self.code.len();
        self.code.extend_from_slice(&rhs.code);
        let end = self.code.len();
        let too_long = |_| Error::new(1, "expression too long".into());
        let rel = Rel {
            start: u32::try_from(rel_start).map_err(too_long)?,
            mid: u32::try_from(mid).map_err(too_long)?,
            end: u32::try_from(end).map_err(too_long)?,
            cmp,
        };
        let mut b = self.test(Test::Rel(rel));
        if negate {
            b = self.not(b);
        }
        let guard = match (lhs.guard, rhs.guard) {
            (Some(a), Some(c)) => Some(self.and(a, c)),
            (a, c) => a.or(c),
        };
        if let Some(g) = guard {
            b = self.and(g, b);
        }
        self.last = None;
        Ok(Some(b))
    }

    pub(super) fn not_a_relation(
        &mut self,
        start: usize,
        lhs: &Arith,
    ) -> Result<Option<usize>, Error> {
        let committed = self.tokens[start].kind != TokKind::LParen
            && self.tokens[start..self.pos]
                .iter()
                .any(|t| t.kind == TokKind::LBracket || t.is_word("len"));
        if committed {
            let found = self.peek();
            return Err(Error::new(
                self.col_of(found),
                format!(
                    "expected a comparison ('=', '!=', '<', '<=', '>', '>=') after the \
                     expression at column {}, found {}",
                    lhs.col,
                    describe(found)
                ),
            ));
        }
        self.pos = start;
        Ok(None)
    }

    /// Binary operators by precedence (libpcap's grammar): `|` < `&` <
    /// shifts < `+ -` < `* /`. `%` and `^` have no precedence there, so
    /// bison shifts: they take everything to their right (see `unary`).
    pub(super) fn binop(t: Token<'_>) -> Option<(Alu, u8)> {
        Some(match t.kind {
            TokKind::Pipe => (Alu::Or, 1),
            TokKind::Amp => (Alu::And, 2),
            TokKind::Shl => (Alu::Lsh, 3),
            TokKind::Shr => (Alu::Rsh, 3),
            TokKind::Plus => (Alu::Add, 4),
            TokKind::Minus => (Alu::Sub, 4),
            TokKind::Star => (Alu::Mul, 5),
            TokKind::Slash => (Alu::Div, 5),
            _ => return None,
        })
    }

    pub(super) fn arith(&mut self, min_prec: u8) -> Result<Arith, Error> {
        let mut lhs = self.unary()?;
        while let Some(t) = self.peek() {
            let Some((alu, prec)) = Self::binop(t).filter(|&(_, p)| p >= min_prec) else {
                break;
            };
            self.pos += 1;
            let rhs = self.arith(prec + 1)?;
            lhs = combine(lhs, alu, rhs, t)?;
        }
        Ok(lhs)
    }

    pub(super) fn unary(&mut self) -> Result<Arith, Error> {
        if let Some(t) = self.peek().filter(|t| t.kind == TokKind::Minus) {
            self.pos += 1;
            let mut a = self.unary()?;
            a.code.push(AOp::Neg);
            a.col = t.col;
            return Ok(a);
        }
        let a = self.primary()?;
        if let Some(t) = self
            .peek()
            .filter(|t| matches!(t.kind, TokKind::Percent | TokKind::Caret))
        {
            self.pos += 1;
            let rhs = self.arith(0)?;
            let alu = if t.kind == TokKind::Percent {
                Alu::Mod
            } else {
                Alu::Xor
            };
            return combine(a, alu, rhs, t);
        }
        Ok(a)
    }

    pub(super) fn primary(&mut self) -> Result<Arith, Error> {
        let found = self.peek();
        let Some(t) = found else {
            return Err(Error::new(
                self.end_col,
                "expected a number, 'len' or 'proto[offset]', found end of expression".into(),
            ));
        };
        match t.kind {
            TokKind::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(Error::new(
                        t.col,
                        format!("parentheses nested more than {MAX_NESTING} deep"),
                    ));
                }
                self.pos += 1;
                self.depth += 1;
                let a = self.arith(0)?;
                self.depth -= 1;
                match self.peek() {
                    Some(c) if c.kind == TokKind::RParen => {
                        self.pos += 1;
                        Ok(a)
                    }
                    found => Err(Error::new(
                        self.col_of(found),
                        format!("expected ')' or an operator, found {}", describe(found)),
                    )),
                }
            }
            TokKind::Word if t.is_word("len") => {
                self.pos += 1;
                Ok(Arith {
                    code: vec![AOp::Len],
                    guard: None,
                    col: t.col,
                })
            }
            TokKind::Word if ProtoQ::of(&t).is_some() && !t.escaped => {
                let pq = ProtoQ::of(&t).unwrap_or(ProtoQ::Ether);
                match self.peek_at(1) {
                    Some(b) if b.kind == TokKind::LBracket => {}
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!("expected '[' after '{}', found {}", t.text, describe(found)),
                        ))
                    }
                }
                self.pos += 2;
                let index = self.arith(0)?;
                let mut size = 1u8;
                if let Some(c) = self.peek().filter(|c| c.kind == TokKind::Colon) {
                    self.pos += 1;
                    let n = self.peek();
                    size = match n.and_then(|n| parse_number(n.text).ok().flatten()) {
                        Some(1) => 1,
                        Some(2) => 2,
                        Some(4) => 4,
                        _ => {
                            return Err(Error::new(
                                self.col_of(n).max(c.col + 1),
                                "data size must be 1, 2, or 4".into(),
                            ))
                        }
                    };
                    self.pos += 1;
                }
                match self.peek() {
                    Some(c) if c.kind == TokKind::RBracket => self.pos += 1,
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!("expected ']' or ':size', found {}", describe(found)),
                        ))
                    }
                }
                self.load_at(pq, index, size, t.col)
            }
            TokKind::Word => {
                let v = if t.escaped {
                    None
                } else {
                    named_constant(t.text)
                };
                let v = match v {
                    Some(v) => v,
                    None => parse_number(t.text)
                        .map_err(|m| Error::new(t.col, m))?
                        .ok_or_else(|| {
                            Error::new(
                                t.col,
                                format!(
                                    "expected a number, 'len' or 'proto[offset]', found {}",
                                    describe(found)
                                ),
                            )
                        })?,
                };
                self.pos += 1;
                Ok(Arith::imm(v, t.col))
            }
            _ => Err(Error::new(
                t.col,
                format!(
                    "expected a number, 'len' or 'proto[offset]', found {}",
                    describe(found)
                ),
            )),
        }
    }

    /// `proto[index:size]` (libpcap's `gen_load`).
    pub(super) fn load_at(
        &mut self,
        pq: ProtoQ,
        index: Arith,
        size: u8,
        col: usize,
    ) -> Result<Arith, Error> {
        let mut index = index;
        let pl = self.pl();
        let shifted = self.lenient();
        let (load, guard) = match pq {
            ProtoQ::Ether => (
                Load {
                    k: 0,
                    size,
                    shifted: false,
                    iphdr: None,
                },
                index.guard,
            ),
            ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp => {
                let b = self.proto_abbrev(pq);
                let guard = match index.guard {
                    Some(g) => self.and(g, b),
                    None => b,
                };
                (
                    Load {
                        k: pl,
                        size,
                        shifted,
                        iphdr: None,
                    },
                    Some(guard),
                )
            }
            ProtoQ::Icmp6 => {
                let b = self.proto_abbrev(ProtoQ::Ip6);
                let b = match index.guard {
                    Some(g) => self.and(g, b),
                    None => b,
                };
                let nh = self.cmp(pl + 6, 1, u32::from(IPPROTO_ICMPV6));
                let guard = self.and(b, nh);
                (
                    Load {
                        k: pl + 40,
                        size,
                        shifted,
                        iphdr: None,
                    },
                    Some(guard),
                )
            }
            ProtoQ::Ah | ProtoQ::Esp => {
                return Err(Error::new(
                    col,
                    format!("'{}[...]' is not supported by libpcap either", pq.name()),
                ))
            }
            _ => {
                let abbrev = self.proto_abbrev(pq);
                let frag = self.ipfrag();
                let mut b = self.and(abbrev, frag);
                if let Some(g) = index.guard {
                    b = self.and(g, b);
                }
                let ip = self.proto_abbrev(ProtoQ::Ip);
                let guard = self.and(ip, b);
                (
                    Load {
                        k: pl,
                        size,
                        shifted,
                        iphdr: Some(pl),
                    },
                    Some(guard),
                )
            }
        };
        index.code.push(AOp::Load(load));
        index.guard = guard;
        index.col = col;
        Ok(index)
    }

    pub(super) fn atom(&mut self, after: Option<Token<'s>>) -> Result<usize, Error> {
        let found = self.peek();
        if let Some(t) = found.filter(|&t| self.starts_arith(t)) {
            let _ = t;
            if let Some(rel) = self.try_relation()? {
                return Ok(rel);
            }
        }
        match found {
            Some(t) if t.kind == TokKind::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(Error::new(
                        t.col,
                        format!("parentheses nested more than {MAX_NESTING} deep"),
                    ));
                }
                self.pos += 1;
                self.depth += 1;
                let inner = self.expr(Some(t))?;
                match self.peek() {
                    Some(close) if close.kind == TokKind::RParen => {
                        self.pos += 1;
                        self.depth -= 1;
                        Ok(inner)
                    }
                    _ => Err(Error::new(
                        t.col,
                        "unmatched '(': it is never closed".into(),
                    )),
                }
            }
            Some(t) if t.kind == TokKind::Word => self.primitive(t),
            _ => {
                let what = match after {
                    Some(a) => format!("expected a primitive after '{}'", a.text),
                    None => "expected a primitive".into(),
                };
                Err(Error::new(
                    self.col_of(found),
                    format!("{what}, found {}", describe(found)),
                ))
            }
        }
    }

    /// A number of the expression language: decimal, `0x` hexadecimal or
    /// `0` octal, as in libpcap.
    pub(super) fn number(&self, t: Token<'_>, what: &str) -> Result<u32, Error> {
        match parse_number(t.text) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::new(t.col, format!("bad {what} '{}'", t.text))),
            Err(m) => Err(Error::new(t.col, m)),
        }
    }
}

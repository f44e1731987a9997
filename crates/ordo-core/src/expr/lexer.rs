//! Expression text to tokens, each with its 1-based character position.

use crate::error::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A number as written (`12`, `0.5`, `1e3`); the parser decides int, float or path segments.
    Num(String),
    Str(String),
    /// An identifier or keyword.
    Ident(String),
    /// `$name`, without the `$`.
    Var(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Colon,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Eof,
}

impl Tok {
    /// How the token is named in "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number {n}"),
            Tok::Str(s) => {
                let mut out = String::from("string ");
                // Writing into a String cannot fail.
                let _ = crate::expr::ast::write_string(&mut out, s);
                out
            }
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Var(s) => format!("'${s}'"),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Colon => ":",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Bang => "!",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            _ => "?",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    /// 1-based character position of the token's first character.
    pub pos: usize,
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::with_capacity(chars.len() / 2 + 1);
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    let err = |i: usize, message: String| ParseError {
        position: i + 1,
        message,
    };
    while let Some(c) = at(i) {
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' => {
                let mut text = String::new();
                while let Some(d @ '0'..='9') = at(i) {
                    text.push(d);
                    i += 1;
                }
                if at(i) == Some('.') && matches!(at(i + 1), Some('0'..='9')) {
                    text.push('.');
                    i += 1;
                    while let Some(d @ '0'..='9') = at(i) {
                        text.push(d);
                        i += 1;
                    }
                }
                if matches!(at(i), Some('e' | 'E')) {
                    let sign = matches!(at(i + 1), Some('+' | '-'));
                    let digit_at = if sign { i + 2 } else { i + 1 };
                    if matches!(at(digit_at), Some('0'..='9')) {
                        text.push('e');
                        if sign {
                            text.extend(at(i + 1));
                        }
                        i = digit_at;
                        while let Some(d @ '0'..='9') = at(i) {
                            text.push(d);
                            i += 1;
                        }
                    }
                }
                if matches!(at(i), Some(c) if c.is_ascii_alphabetic() || c == '_') {
                    return Err(err(
                        i,
                        format!("unexpected '{}' after number", at(i).unwrap_or(' ')),
                    ));
                }
                Tok::Num(text)
            }
            '"' | '\'' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match at(i) {
                        None => return Err(err(start, "unterminated string".to_string())),
                        Some(ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let esc = at(i + 1);
                            i += 2;
                            match esc {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some('r') => s.push('\r'),
                                Some('0') => s.push('\0'),
                                Some('\\') => s.push('\\'),
                                Some('"') => s.push('"'),
                                Some('\'') => s.push('\''),
                                Some('u') => {
                                    let hex: String = chars.iter().skip(i).take(4).collect();
                                    let code = (hex.len() == 4)
                                        .then(|| u32::from_str_radix(&hex, 16).ok())
                                        .flatten()
                                        .and_then(char::from_u32);
                                    match code {
                                        Some(ch) => s.push(ch),
                                        None => {
                                            return Err(err(
                                                i - 2,
                                                "expected 4 hex digits of a valid character after '\\u'"
                                                    .to_string(),
                                            ));
                                        }
                                    }
                                    i += 4;
                                }
                                Some(other) => {
                                    return Err(err(i - 2, format!("unknown escape '\\{other}'")));
                                }
                                None => return Err(err(start, "unterminated string".to_string())),
                            }
                        }
                        Some(ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_alphabetic() || c == '_' => Tok::Ident(read_ident(&chars, &mut i)),
            '$' => {
                i += 1;
                if !matches!(at(i), Some(c) if c.is_ascii_alphabetic() || c == '_') {
                    return Err(err(i, "expected a variable name after '$'".to_string()));
                }
                Tok::Var(read_ident(&chars, &mut i))
            }
            _ => {
                let two = at(i + 1);
                let (tok, len) = match (c, two) {
                    ('=', Some('=')) => (Tok::EqEq, 2),
                    ('!', Some('=')) => (Tok::NotEq, 2),
                    ('<', Some('=')) => (Tok::Le, 2),
                    ('>', Some('=')) => (Tok::Ge, 2),
                    ('&', Some('&')) => (Tok::AndAnd, 2),
                    ('|', Some('|')) => (Tok::OrOr, 2),
                    ('(', _) => (Tok::LParen, 1),
                    (')', _) => (Tok::RParen, 1),
                    ('[', _) => (Tok::LBracket, 1),
                    (']', _) => (Tok::RBracket, 1),
                    ('{', _) => (Tok::LBrace, 1),
                    ('}', _) => (Tok::RBrace, 1),
                    (',', _) => (Tok::Comma, 1),
                    ('.', _) => (Tok::Dot, 1),
                    (':', _) => (Tok::Colon, 1),
                    ('+', _) => (Tok::Plus, 1),
                    ('-', _) => (Tok::Minus, 1),
                    ('*', _) => (Tok::Star, 1),
                    ('/', _) => (Tok::Slash, 1),
                    ('%', _) => (Tok::Percent, 1),
                    ('!', _) => (Tok::Bang, 1),
                    ('<', _) => (Tok::Lt, 1),
                    ('>', _) => (Tok::Gt, 1),
                    ('=', _) => {
                        return Err(err(i, "unexpected '=', did you mean '=='?".to_string()));
                    }
                    ('&', _) => {
                        return Err(err(i, "unexpected '&', did you mean '&&'?".to_string()));
                    }
                    ('|', _) => {
                        return Err(err(i, "unexpected '|', did you mean '||'?".to_string()));
                    }
                    (other, _) => return Err(err(i, format!("unexpected character '{other}'"))),
                };
                i += len;
                tok
            }
        };
        out.push(Token {
            tok,
            pos: start + 1,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len() + 1,
    });
    Ok(out)
}

fn read_ident(chars: &[char], i: &mut usize) -> String {
    let mut s = String::new();
    while let Some(&c) = chars.get(*i) {
        if c.is_ascii_alphanumeric() || c == '_' {
            s.push(c);
            *i += 1;
        } else {
            break;
        }
    }
    s
}

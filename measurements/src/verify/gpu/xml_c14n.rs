//! Canonical XML, inclusive, without comments — exactly the subset that NVIDIA's signed RIMs
//! need, written by hand.
//!
//! Why by hand: no maintained pure-Rust crate implements XML-DSig or canonical XML (the
//! complete ones bind libxml2/xmlsec in C). RIMs are small, machine-written documents, so this
//! module implements only what they use and *refuses* the rest instead of guessing:
//!
//! - Canonical XML 1.1 (W3C REC xml-c14n11, 2 May 2008) and 1.0 (REC xml-c14n, 15 March 2001),
//!   *without comments*. For documents without `xml:*` attributes the two produce the same
//!   octets (1.1 differs from 1.0 only in how `xml:id`, `xml:base`, `xml:lang` and `xml:space`
//!   are inherited into document subsets, §2.4 of 1.1), so [`check_supported`] refuses any
//!   `xml:*` attribute and one serializer serves both.
//! - Comments and processing instructions are refused anywhere in the document (none occur in
//!   RIMs; refusing them avoids the "without comments" node-set subtleties, §2.1/§2.3 of 1.1).
//! - Document subsets are limited to the two that an enveloped signature over `URI=""` needs:
//!   one element's subtree (the apex: `SignedInfo`), and one element's subtree minus one
//!   descendant subtree (the document element minus `Signature`, the enveloped-signature
//!   transform, xmldsig-core1 §6.6.4).
//!
//! What the serializer does, per xml-c14n11 §2.2 and §2.3 (1.0: §2.3, §4.*): empty elements
//! become start/end pairs, the XML declaration and whitespace outside the document element go,
//! namespace declarations are emitted where a namespace node first appears relative to the
//! nearest output ancestor (inclusive c14n: at the apex every in-scope namespace appears),
//! sorted by prefix with the default first; attributes sorted by (namespace URI, local name);
//! text and attribute values escaped as §2.3 prescribes. Character and entity references,
//! CDATA sections, line ends and attribute-value normalization are resolved by the parser
//! (roxmltree), as the data model of §2.1 expects.

use std::collections::BTreeMap;

use roxmltree::{Document, Node, NodeId, NodeType};

use super::rim::RimError;

/// The namespace URI bound to the `xml` prefix.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Refuses what this canonicalizer does not implement: comments, processing instructions
/// and `xml:*` attributes anywhere in the document (see the module docs).
pub(crate) fn check_supported(doc: &Document<'_>) -> Result<(), RimError> {
    for node in doc.root().descendants() {
        match node.node_type() {
            NodeType::Comment => return Err(RimError::UnsupportedXml("a comment")),
            NodeType::PI => return Err(RimError::UnsupportedXml("a processing instruction")),
            NodeType::Element => {
                if node.attributes().any(|a| a.namespace() == Some(XML_NS)) {
                    return Err(RimError::UnsupportedXml("an xml:* attribute"));
                }
            }
            NodeType::Root | NodeType::Text => {}
        }
    }
    Ok(())
}

/// Canonicalizes the subtree rooted at `apex` (xml-c14n11 §2.2, inclusive, without comments),
/// leaving out the subtree of `exclude` if given.
///
/// `input` must be the text `apex`'s document was parsed from: the qualified names are taken
/// from it, since the data model keeps namespace URIs, not the prefixes written.
pub(crate) fn canonicalize(
    input: &str,
    apex: Node<'_, '_>,
    exclude: Option<NodeId>,
) -> Result<Vec<u8>, RimError> {
    let mut out = Vec::with_capacity(input.len());
    // The open elements, outermost first, each with whether it lies in the excluded subtree.
    // `descendants` is a pre-order walk; the end tags are written when it leaves a subtree.
    let mut open_elements: Vec<(Node<'_, '_>, bool)> = Vec::new();
    for node in apex.descendants() {
        close_until_parent(input, node, &mut open_elements, &mut out)?;
        let skipped = Some(node.id()) == exclude || open_elements.last().is_some_and(|e| e.1);
        if node.is_element() {
            open_elements.push((node, skipped));
        }
        if !skipped {
            open(input, apex, node, &mut out)?;
        }
    }
    while let Some((element, skipped)) = open_elements.pop() {
        if !skipped {
            end_tag(input, element, &mut out)?;
        }
    }
    Ok(out)
}

/// Writes the end tags of the open elements that `node` is not inside.
fn close_until_parent<'a, 'i>(
    input: &str,
    node: Node<'a, 'i>,
    open_elements: &mut Vec<(Node<'a, 'i>, bool)>,
    out: &mut Vec<u8>,
) -> Result<(), RimError> {
    while let Some(&(element, skipped)) = open_elements.last() {
        if Some(element) == node.parent() {
            break;
        }
        open_elements.pop();
        if !skipped {
            end_tag(input, element, out)?;
        }
    }
    Ok(())
}

fn end_tag(input: &str, element: Node<'_, '_>, out: &mut Vec<u8>) -> Result<(), RimError> {
    out.extend_from_slice(b"</");
    out.extend_from_slice(element_qname(input, element)?.as_bytes());
    out.push(b'>');
    Ok(())
}

/// Writes the start of `node`: a start tag, or escaped text.
fn open(
    input: &str,
    apex: Node<'_, '_>,
    node: Node<'_, '_>,
    out: &mut Vec<u8>,
) -> Result<(), RimError> {
    match node.node_type() {
        NodeType::Element => start_tag(input, apex, node, out),
        NodeType::Text => {
            escape_text(node.text().unwrap_or(""), out);
            Ok(())
        }
        NodeType::Comment => Err(RimError::UnsupportedXml("a comment")),
        NodeType::PI => Err(RimError::UnsupportedXml("a processing instruction")),
        NodeType::Root => Err(RimError::UnsupportedXml(
            "a document node inside an element",
        )),
    }
}

/// The start tag: name, namespace declarations (xml-c14n11 §2.3 "Namespace Nodes"), then the
/// attributes in canonical order.
fn start_tag(
    input: &str,
    apex: Node<'_, '_>,
    node: Node<'_, '_>,
    out: &mut Vec<u8>,
) -> Result<(), RimError> {
    out.push(b'<');
    out.extend_from_slice(element_qname(input, node)?.as_bytes());

    // The nearest output ancestor: the parent, except at the apex, which has none.
    let parent = if node == apex {
        None
    } else {
        node.parent_element()
    };
    let own = in_scope(node);
    let inherited = parent.map(in_scope);
    let own_default = own.get("").copied().unwrap_or("");
    // The default namespace (sorted first): `xmlns="…"` when it differs from the output
    // parent's; `xmlns=""` only to undo a non-empty default of the output parent.
    let parent_default = inherited
        .as_ref()
        .and_then(|p| p.get("").copied())
        .unwrap_or("");
    if own_default != parent_default {
        write_attr(out, "xmlns", own_default);
    }
    for (prefix, uri) in own.iter().filter(|(p, _)| !p.is_empty()) {
        let rendered = inherited.as_ref().and_then(|p| p.get(prefix)) == Some(uri);
        if !rendered {
            write_attr(out, &format!("xmlns:{prefix}"), uri);
        }
    }

    let mut attrs = Vec::new();
    for attr in node.attributes() {
        let qname = input
            .get(attr.range_qname())
            .ok_or(RimError::UnsupportedXml(
                "an attribute without a source position",
            ))?;
        attrs.push((
            attr.namespace().unwrap_or(""),
            attr.name(),
            qname,
            attr.value(),
        ));
    }
    // §2.2: by namespace URI (none first), then local name; UTF-8 byte order is code-point order.
    attrs.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, _, qname, value) in attrs {
        write_attr(out, qname, value);
    }
    out.push(b'>');
    Ok(())
}

/// The namespace nodes in scope at `node`, by prefix (`""` for the default namespace).
fn in_scope<'a>(node: Node<'a, '_>) -> BTreeMap<&'a str, &'a str> {
    node.namespaces()
        .filter(|ns| ns.uri() != XML_NS)
        .map(|ns| (ns.name().unwrap_or(""), ns.uri()))
        .collect()
}

/// The element's qualified name as written in its start tag.
fn element_qname<'i>(input: &'i str, node: Node<'_, '_>) -> Result<&'i str, RimError> {
    let tag = input
        .get(node.range().start..)
        .and_then(|s| s.strip_prefix('<'))
        .ok_or(RimError::UnsupportedXml(
            "an element without a source position",
        ))?;
    let end = tag
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    let qname = tag.get(..end).unwrap_or("");
    // The written name must be the parsed one (a defence against position drift).
    let local = qname.rsplit(':').next().unwrap_or("");
    if local != node.tag_name().name() {
        return Err(RimError::UnsupportedXml(
            "an element name that does not match its source",
        ));
    }
    Ok(qname)
}

/// ` name="value"` with the attribute-value escapes of xml-c14n11 §2.3.
fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for c in value.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\t' => out.extend_from_slice(b"&#x9;"),
            '\n' => out.extend_from_slice(b"&#xA;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => push_char(out, c),
        }
    }
    out.push(b'"');
}

/// Text with the text-node escapes of xml-c14n11 §2.3.
fn escape_text(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => push_char(out, c),
        }
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = Document::parse(xml).unwrap();
        check_supported(&doc).unwrap();
        String::from_utf8(canonicalize(xml, doc.root_element(), None).unwrap()).unwrap()
    }

    #[test]
    fn empty_elements_attribute_order_and_escapes() {
        // Attributes: unqualified first by local name, then by namespace URI.
        let xml = "<?xml version=\"1.0\"?>\n<r xmlns:b=\"urn:b\" xmlns:a=\"urn:a\" z=\"1\" \
                   b:x=\"&lt;&amp;&quot;&#9;&#10;&#13;\" a:y=\"2\" c=\"3\"><e/>t&gt;&amp;&#13;</r>\n";
        assert_eq!(
            c14n(xml),
            "<r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" c=\"3\" z=\"1\" a:y=\"2\" \
             b:x=\"&lt;&amp;&quot;&#x9;&#xA;&#xD;\"><e></e>t&gt;&amp;&#xD;</r>"
        );
    }

    #[test]
    fn namespaces_are_emitted_where_first_in_scope() {
        let xml = "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:c xmlns:p=\"urn:p\" xmlns:q=\"urn:q\">\
                   <e xmlns=\"\"/></p:c></r>";
        assert_eq!(
            c14n(xml),
            "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:c xmlns:q=\"urn:q\"><e xmlns=\"\"></e></p:c></r>"
        );
        // At an apex, every in-scope namespace appears.
        let doc = Document::parse(xml).unwrap();
        let apex = doc.descendants().find(|n| n.has_tag_name("e")).unwrap();
        let out = canonicalize(xml, apex, None).unwrap();
        assert_eq!(out, b"<e xmlns:p=\"urn:p\" xmlns:q=\"urn:q\"></e>");
    }

    #[test]
    fn excluded_subtree_leaves_its_surroundings() {
        let xml = "<r>\n <a><b/></a>\n<s><t/></s></r>";
        let doc = Document::parse(xml).unwrap();
        let s = doc.descendants().find(|n| n.has_tag_name("s")).unwrap();
        let out = canonicalize(xml, doc.root_element(), Some(s.id())).unwrap();
        assert_eq!(out, b"<r>\n <a><b></b></a>\n</r>");
    }

    #[test]
    fn comments_pis_and_xml_attributes_are_refused() {
        for xml in [
            "<r><!-- c --></r>",
            "<r><?pi x?></r>",
            "<r xml:lang=\"en\"/>",
        ] {
            let doc = Document::parse(xml).unwrap();
            assert!(
                matches!(check_supported(&doc), Err(RimError::UnsupportedXml(_))),
                "{xml}"
            );
        }
    }
}

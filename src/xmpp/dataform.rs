//! XEP-0004 data forms: the few shapes the server builds and reads.

use super::element::Element;
use super::ns;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub var: String,
    pub kind: Option<&'static str>,
    pub label: Option<String>,
    pub required: bool,
    pub values: Vec<String>,
}

impl Field {
    pub fn new(var: &str, kind: &'static str) -> Self {
        Field {
            var: var.to_owned(),
            kind: Some(kind),
            label: None,
            required: false,
            values: Vec::new(),
        }
    }

    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn value(mut self, value: &str) -> Self {
        self.values.push(value.to_owned());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataForm {
    /// `form`, `submit`, `result` or `cancel`.
    pub kind: String,
    pub title: Option<String>,
    pub instructions: Option<String>,
    pub fields: Vec<Field>,
}

impl DataForm {
    pub fn new(kind: &str) -> Self {
        DataForm {
            kind: kind.to_owned(),
            title: None,
            instructions: None,
            fields: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// Adds the hidden `FORM_TYPE` field that names the form's purpose.
    pub fn with_form_type(self, form_type: &str) -> Self {
        self.with_field(Field::new("FORM_TYPE", "hidden").value(form_type))
    }

    pub fn value(&self, var: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.var == var)
            .and_then(|f| f.values.first())
            .map(String::as_str)
    }

    pub fn form_type(&self) -> Option<&str> {
        self.value("FORM_TYPE")
    }

    pub fn parse(x: &Element) -> Option<DataForm> {
        if !x.is("x", ns::DATA_FORMS) {
            return None;
        }
        let mut form = DataForm::new(x.attr("type").unwrap_or("form"));
        form.title = x.get_child("title", ns::DATA_FORMS).map(Element::text);
        form.instructions = x
            .get_child("instructions", ns::DATA_FORMS)
            .map(Element::text);
        for f in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
            let Some(var) = f.attr("var") else { continue };
            form.fields.push(Field {
                var: var.to_owned(),
                kind: None,
                label: None,
                required: f.has_child("required", ns::DATA_FORMS),
                values: f
                    .children()
                    .filter(|v| v.is("value", ns::DATA_FORMS))
                    .map(Element::text)
                    .collect(),
            });
        }
        Some(form)
    }

    pub fn to_element(&self) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", self.kind.clone());
        if let Some(title) = &self.title {
            x.push_child(Element::new("title", ns::DATA_FORMS).with_text(title.clone()));
        }
        if let Some(instructions) = &self.instructions {
            x.push_child(
                Element::new("instructions", ns::DATA_FORMS).with_text(instructions.clone()),
            );
        }
        for f in &self.fields {
            let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", f.var.clone());
            if let Some(kind) = f.kind {
                field.set_attr("type", kind);
            }
            if let Some(label) = &f.label {
                field.set_attr("label", label.clone());
            }
            if f.required {
                field.push_child(Element::new("required", ns::DATA_FORMS));
            }
            for v in &f.values {
                field.push_child(Element::new("value", ns::DATA_FORMS).with_text(v.clone()));
            }
            x.push_child(field);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let form = DataForm::new("form")
            .with_form_type("jabber:iq:register")
            .with_field(
                Field::new("username", "text-single")
                    .label("Username")
                    .required(),
            );
        let parsed = DataForm::parse(&form.to_element()).unwrap();
        assert_eq!(parsed.form_type(), Some("jabber:iq:register"));
        assert!(parsed.fields[1].required);
        assert_eq!(parsed.value("username"), None);
        assert!(DataForm::parse(&Element::new("x", "other")).is_none());
    }
}

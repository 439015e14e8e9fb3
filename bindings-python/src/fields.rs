//! Python classes that wrap a core value (`struct PyX(corral::X)`) and show its fields as
//! read-only attributes, rather than copying them into fields of their own.

/// `#[pymethods] impl $ty { ... }` with a `#[getter]` per listed field of the wrapped core value
/// (`self.0`; a field's doc comment becomes the attribute's), then the type's own methods. With
/// `, to_dict` after the type, a `to_dict()` method too: the listed fields as a dict, in order.
/// One macro rather than a second `#[pymethods]` block, which PyO3 allows only with its
/// `multiple-pymethods` feature.
macro_rules! pymethods_with_fields {
    (impl $ty:ident, to_dict { $($(#[$doc:meta])* $field:ident: $field_ty:ty),* $(,)? } $($own:tt)*) => {
        $crate::fields::pymethods_with_fields! {
            impl $ty { $($(#[$doc])* $field: $field_ty),* }

            /// Every field as a dict.
            fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
                let d = pyo3::types::PyDict::new(py);
                $(d.set_item(stringify!($field), &self.0.$field)?;)*
                Ok(d)
            }

            $($own)*
        }
    };
    (impl $ty:ident { $($(#[$doc:meta])* $field:ident: $field_ty:ty),* $(,)? } $($own:tt)*) => {
        #[pymethods]
        impl $ty {
            $(
                $(#[$doc])*
                #[getter]
                fn $field(&self) -> &$field_ty {
                    &self.0.$field
                }
            )*

            $($own)*
        }
    };
}
pub(crate) use pymethods_with_fields;

//! Prints every service and rpc of the API from the generated descriptor set.

use prost::Message;
use prost_types::FileDescriptorSet;

fn main() -> Result<(), prost::DecodeError> {
    let set = FileDescriptorSet::decode(grimos_proto::FILE_DESCRIPTOR_SET)?;
    for file in set
        .file
        .iter()
        .filter(|f| f.package().starts_with("grimos."))
    {
        for service in &file.service {
            println!("{}.{} ({})", file.package(), service.name(), file.name());
            for method in &service.method {
                println!(
                    "  rpc {}({}) returns ({})",
                    method.name(),
                    method.input_type().trim_start_matches('.'),
                    method.output_type().trim_start_matches('.'),
                );
            }
        }
    }
    Ok(())
}

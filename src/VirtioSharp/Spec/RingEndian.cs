namespace VirtioSharp.Spec;

/// <summary>
/// Byte order of ring fields. Modern devices are always little-endian (§2.4); legacy devices use the guest's native
/// order (§2.7 legacy interface), which matters for big-endian guests such as POWER.
/// </summary>
public readonly struct RingEndian
{
    public bool BigEndian { get; }
    private RingEndian(bool big) => BigEndian = big;
    public static RingEndian Little => new(false);
    public static RingEndian Big => new(true);
    public bool IsNative => BigEndian != BitConverter.IsLittleEndian;

    public ushort Fix(ushort v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    public uint Fix(uint v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    public ulong Fix(ulong v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    public override string ToString() => BigEndian ? "big-endian" : "little-endian";
}

namespace VirtioSharp.Spec;

/// <summary>
/// Byte order of ring fields. Modern devices are always little-endian (§2.4); legacy devices use the guest's native
/// order (§2.7 legacy interface), which matters for big-endian guests such as POWER.
/// </summary>
public readonly struct RingEndian
{
    /// <summary>Whether ring fields are big-endian.</summary>
    public bool BigEndian { get; }
    private RingEndian(bool big) => BigEndian = big;
    /// <summary>Modern and little-endian legacy rings.</summary>
    public static RingEndian Little => new(false);
    /// <summary>Legacy rings of a big-endian guest.</summary>
    public static RingEndian Big => new(true);
    /// <summary>Whether the ring order matches the host's, so <see cref="Fix(ushort)"/> is a no-op.</summary>
    public bool IsNative => BigEndian != BitConverter.IsLittleEndian;

    /// <summary>Converts between ring order and host order (the same swap both ways).</summary>
    public ushort Fix(ushort v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    /// <inheritdoc cref="Fix(ushort)"/>
    public uint Fix(uint v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    /// <inheritdoc cref="Fix(ushort)"/>
    public ulong Fix(ulong v) => IsNative ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    /// <inheritdoc/>
    public override string ToString() => BigEndian ? "big-endian" : "little-endian";
}

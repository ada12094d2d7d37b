namespace VirtioSharp.Fuzz.Targets;

/// <summary>Writes fuzz inputs in the encodings the targets decode, for seed corpora and tests.</summary>
public sealed class InputBuilder
{
    private readonly List<byte> _bytes = [];

    /// <summary>Appends a byte.</summary>
    public InputBuilder U8(int v) { _bytes.Add((byte)v); return this; }
    /// <summary>Appends a little-endian u16.</summary>
    public InputBuilder U16(int v) => U8(v).U8(v >> 8);
    /// <summary>Appends a little-endian u32.</summary>
    public InputBuilder U32(uint v) => U16((int)(v & 0xFFFF)).U16((int)(v >> 16));
    /// <summary>Appends a little-endian u64.</summary>
    public InputBuilder U64(ulong v) => U32((uint)v).U32((uint)(v >> 32));
    /// <summary>Appends raw bytes.</summary>
    public InputBuilder Bytes(ReadOnlySpan<byte> b) { foreach (var x in b) _bytes.Add(x); return this; }
    /// <summary>The input so far.</summary>
    public byte[] ToArray() => [.. _bytes];
}

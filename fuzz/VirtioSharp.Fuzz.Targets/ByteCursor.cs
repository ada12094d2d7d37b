namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Reads a fuzz input field by field; past the end every read returns zeros, so any byte string decodes to some
/// program and truncation by the fuzzer never needs special cases.
/// </summary>
public ref struct ByteCursor(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;

    /// <summary>True while unread bytes remain.</summary>
    public readonly bool More => _pos < _data.Length;
    /// <summary>Bytes not yet read.</summary>
    public readonly int Remaining => Math.Max(0, _data.Length - _pos);

    /// <summary>Next byte, 0 past the end.</summary>
    public byte U8() => _pos < _data.Length ? _data[_pos++] : (byte)0;

    /// <summary>Next little-endian u16.</summary>
    public ushort U16() => (ushort)(U8() | U8() << 8);

    /// <summary>Next little-endian u32.</summary>
    public uint U32() => U16() | (uint)U16() << 16;

    /// <summary>Next little-endian u64.</summary>
    public ulong U64() => U32() | (ulong)U32() << 32;

    /// <summary>Up to <paramref name="n"/> bytes (fewer at the end of the input).</summary>
    public ReadOnlySpan<byte> Bytes(int n)
    {
        int take = Math.Min(n, Remaining);
        var s = _data.Slice(_pos, take);
        _pos += take;
        return s;
    }
}

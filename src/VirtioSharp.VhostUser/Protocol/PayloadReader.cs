using System.Buffers.Binary;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>A bounds-checked little-endian reader over a message payload: every field read is checked once.</summary>
internal ref struct PayloadReader(ReadOnlySpan<byte> data, VhostRequest request)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (_data.Length - _pos < n)
            throw new Interop.VhostProtocolException($"{request}: payload of {_data.Length} bytes is too short (needed {n} more at offset {_pos})");
        var s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public byte U8() => Take(1)[0];
    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));
    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
    public ReadOnlySpan<byte> Bytes(int n) => Take(n);
    public void Skip(int n) => Take(n);
    public int Remaining => _data.Length - _pos;
}

namespace VirtioSharp.Devices.Block;

/// <summary>A disk in managed memory.</summary>
public sealed class MemoryBackend(ulong size, bool readOnly = false) : IBlockBackend
{
    private readonly byte[] _data = new byte[checked((int)size)];
    public ulong Size => (ulong)_data.Length;
    public bool ReadOnly { get; } = readOnly;
    public long Flushes { get; private set; }
    public Span<byte> Data => _data;
    public void Read(ulong offset, Span<byte> destination) => _data.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);
    public void Write(ulong offset, ReadOnlySpan<byte> source) => source.CopyTo(_data.AsSpan(checked((int)offset)));
    public void Flush() => Flushes++;
    public void Discard(ulong offset, ulong length) => WriteZeroes(offset, length);
    public void WriteZeroes(ulong offset, ulong length) => _data.AsSpan(checked((int)offset), checked((int)length)).Clear();
    public void Dispose() { }
}

namespace VirtioSharp.Devices.Block;

/// <summary>A disk in managed memory.</summary>
public sealed class MemoryBackend(ulong size, bool readOnly = false) : IBlockBackend
{
    private readonly byte[] _data = new byte[checked((int)size)];
    /// <inheritdoc/>
    public ulong Size => (ulong)_data.Length;
    /// <inheritdoc/>
    public bool ReadOnly { get; } = readOnly;
    /// <summary>Flush calls so far (tests check the device forwards FLUSH).</summary>
    public long Flushes { get; private set; }
    /// <summary>The backing bytes, for host-side inspection.</summary>
    public Span<byte> Data => _data;
    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> destination) => _data.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);
    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> source) => source.CopyTo(_data.AsSpan(checked((int)offset)));
    /// <inheritdoc/>
    public void Flush() => Flushes++;
    /// <inheritdoc/>
    public void Discard(ulong offset, ulong length) => WriteZeroes(offset, length);
    /// <inheritdoc/>
    public void WriteZeroes(ulong offset, ulong length) => _data.AsSpan(checked((int)offset), checked((int)length)).Clear();
    /// <inheritdoc/>
    public void Dispose() { }
}

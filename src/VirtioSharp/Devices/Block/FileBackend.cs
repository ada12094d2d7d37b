namespace VirtioSharp.Devices.Block;

/// <summary>A raw image file, accessed with positional I/O (no shared file position between queues).</summary>
public sealed class FileBackend : IBlockBackend
{
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
    private static readonly byte[] Zeros = new byte[64 * 1024];

    /// <summary>Opens the image at <paramref name="path"/>, read-only if <paramref name="readOnly"/>.</summary>
    public FileBackend(string path, bool readOnly = false)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"block image '{path}' does not exist; create it first (e.g. truncate -s 64M {path})", path);
        _handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        ReadOnly = readOnly;
        Size = (ulong)RandomAccess.GetLength(_handle) & ~(ulong)(BlkSpec.SectorSize - 1);
    }

    /// <inheritdoc/>
    public ulong Size { get; }
    /// <inheritdoc/>
    public bool ReadOnly { get; }

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[done..], (long)offset + done);
            if (n == 0) { destination[done..].Clear(); return; }
            done += n;
        }
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> source) => RandomAccess.Write(_handle, source, (long)offset);
    /// <inheritdoc/>
    public void Flush() => RandomAccess.FlushToDisk(_handle);
    /// <inheritdoc/>
    public void Discard(ulong offset, ulong length) => WriteZeroes(offset, length);

    /// <inheritdoc/>
    public void WriteZeroes(ulong offset, ulong length)
    {
        while (length > 0)
        {
            int n = (int)Math.Min(length, (ulong)Zeros.Length);
            RandomAccess.Write(_handle, Zeros.AsSpan(0, n), (long)offset);
            offset += (ulong)n; length -= (ulong)n;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();
}

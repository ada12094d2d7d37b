using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// A write-back CPU cache of 64-byte lines in front of RAM. CPU accesses allocate lines; dirty lines reach RAM only when
/// cleaned. It never evicts, so what is dirty stays dirty until maintenance: mismatched DMA ops corrupt data every time,
/// not by luck. A coherent device snoops it (reads see dirty lines, writes to cached lines land in the cache, as with I/O
/// stashing); a non-coherent device sees RAM only.
/// </summary>
public sealed class CpuCache(GuestMemory ram) : ICpuMemory
{
    internal const int LineSize = 64;
    private sealed class Line
    {
        public readonly byte[] Data = new byte[LineSize];
        public bool Dirty;
    }

    private readonly Dictionary<ulong, Line> _lines = new();
    private readonly List<(ulong Start, ulong End)> _uncached = new();

    internal int Lines => _lines.Count;
    internal int DirtyLines => _lines.Values.Count(l => l.Dirty);
    internal long DiscardedDirtyLines { get; private set; }

    private bool IsUncached(ulong gpa)
    {
        foreach (var (s, e) in _uncached) if (gpa >= s && gpa < e) return true;
        return false;
    }

    /// <summary>Marks [<paramref name="gpa"/>, +<paramref name="length"/>) uncached (or cached again): CPU accesses there go straight to RAM.</summary>
    public void SetUncached(ulong gpa, ulong length, bool uncached)
    {
        if (uncached) _uncached.Add((gpa, gpa + length));
        else _uncached.RemoveAll(r => r.Start == gpa && r.End == gpa + length);
    }

    private Line Fill(ulong line)
    {
        if (_lines.TryGetValue(line, out var l)) return l;
        l = new Line();
        ram.Read(line, l.Data);
        _lines[line] = l;
        return l;
    }

    /// <summary>Walks [gpa, gpa+len) a line fragment at a time.</summary>
    private static void ForEachFragment(ulong gpa, int len, Action<ulong, int, int> body)
    {
        int done = 0;
        while (done < len)
        {
            ulong a = gpa + (ulong)done;
            int inLine = (int)(a & (LineSize - 1));
            int n = Math.Min(LineSize - inLine, len - done);
            body(a - (ulong)inLine, inLine, n);
            done += n;
        }
    }

    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst)
    {
        if (!ram.IsBacked(gpa, (ulong)dst.Length)) return MemStatus.Unmapped;
        var buf = new byte[dst.Length];
        ForEachFragment(gpa, dst.Length, (line, off, n) =>
        {
            int at = (int)(line + (ulong)off - gpa);
            if (IsUncached(line)) ram.Read(line + (ulong)off, buf.AsSpan(at, n));
            else Fill(line).Data.AsSpan(off, n).CopyTo(buf.AsSpan(at, n));
        });
        buf.CopyTo(dst);
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src)
    {
        if (!ram.IsBacked(gpa, (ulong)src.Length)) return MemStatus.Unmapped;
        var buf = src.ToArray();
        ForEachFragment(gpa, buf.Length, (line, off, n) =>
        {
            int at = (int)(line + (ulong)off - gpa);
            if (IsUncached(line)) { ram.Write(line + (ulong)off, buf.AsSpan(at, n)); return; }
            var l = Fill(line);
            buf.AsSpan(at, n).CopyTo(l.Data.AsSpan(off, n));
            l.Dirty = true;
        });
        return MemStatus.Ok;
    }

    /// <inheritdoc/>
    public MemStatus Copy(ulong dstGpa, ulong srcGpa, ulong length)
    {
        var tmp = new byte[length];
        var st = Read(srcGpa, tmp);
        return st != MemStatus.Ok ? st : Write(dstGpa, tmp);
    }

    /// <summary>Writes dirty lines of the range back to RAM; they stay cached, now clean.</summary>
    public void Clean(ulong gpa, ulong length)
    {
        for (ulong line = gpa & ~(ulong)(LineSize - 1); line < gpa + length; line += LineSize)
            if (_lines.TryGetValue(line, out var l) && l.Dirty)
            {
                ram.Write(line, l.Data);
                l.Dirty = false;
            }
    }

    /// <summary>Drops lines of the range; dirty data in them is lost.</summary>
    public void Invalidate(ulong gpa, ulong length)
    {
        for (ulong line = gpa & ~(ulong)(LineSize - 1); line < gpa + length; line += LineSize)
            if (_lines.Remove(line, out var l) && l.Dirty) DiscardedDirtyLines++;
    }

    /// <summary>A coherent device's read: dirty (or any cached) lines win over RAM.</summary>
    internal void SnoopRead(ulong gpa, Span<byte> dst)
    {
        var buf = new byte[dst.Length];
        ForEachFragment(gpa, dst.Length, (line, off, n) =>
        {
            int at = (int)(line + (ulong)off - gpa);
            if (_lines.TryGetValue(line, out var l)) l.Data.AsSpan(off, n).CopyTo(buf.AsSpan(at, n));
            else ram.Read(line + (ulong)off, buf.AsSpan(at, n));
        });
        buf.CopyTo(dst);
    }

    /// <summary>
    /// A coherent device's write: lines the CPU holds are updated in the cache as dirty lines (I/O stashing); other
    /// lines go to RAM.
    /// </summary>
    internal void SnoopWrite(ulong gpa, ReadOnlySpan<byte> src)
    {
        var buf = src.ToArray();
        ForEachFragment(gpa, buf.Length, (line, off, n) =>
        {
            int at = (int)(line + (ulong)off - gpa);
            // Only lines already cached are stashed into. Allocating new lines here hid the device's used-ring writes
            // from the driver, which reads its coherent rings straight from RAM (never through this cache), so every
            // coherent device on a cached platform hung.
            if (IsUncached(line) || !_lines.TryGetValue(line, out var l)) { ram.Write(line + (ulong)off, buf.AsSpan(at, n)); return; }
            buf.AsSpan(at, n).CopyTo(l.Data.AsSpan(off, n));
            l.Dirty = true;
        });
    }
}

using VirtioSharp.Memory;

namespace VirtioSharp.Queues;

/// <summary>Reads a chain's readable bytes in order, across descriptor boundaries, through the device's memory view.</summary>
public ref struct ChainReader<TMem> where TMem : struct, IDeviceMemory
{
    private readonly TMem _mem;
    private readonly ReadOnlySpan<ChainSegment> _segs;
    private int _seg;
    private uint _offset;

    /// <summary>A reader over <paramref name="chain"/>'s readable segments, accessed through <paramref name="mem"/>.</summary>
    public ChainReader(TMem mem, DescriptorChain chain)
    {
        _mem = mem;
        _segs = chain.Readable;
    }

    /// <summary>Bytes read so far.</summary>
    public ulong Consumed { get; private set; }

    /// <summary>Fills as much of <paramref name="dst"/> as the chain has; <paramref name="read"/> says how much.</summary>
    public MemStatus Read(scoped Span<byte> dst, out int read)
    {
        read = 0;
        while (!dst.IsEmpty && _seg < _segs.Length)
        {
            var s = _segs[_seg];
            uint left = s.Length - _offset;
            if (left == 0) { _seg++; _offset = 0; continue; }
            int n = (int)Math.Min(left, (uint)dst.Length);
            var st = _mem.Read(s.Addr + _offset, dst[..n]);
            if (st != MemStatus.Ok) return st;
            dst = dst[n..];
            read += n;
            _offset += (uint)n;
            Consumed += (ulong)n;
        }
        return MemStatus.Ok;
    }

    /// <summary>Skips <paramref name="count"/> readable bytes (e.g. a request header already parsed).</summary>
    public bool Skip(ulong count)
    {
        while (count > 0 && _seg < _segs.Length)
        {
            uint left = _segs[_seg].Length - _offset;
            uint n = (uint)Math.Min(left, count);
            _offset += n; count -= n; Consumed += n;
            if (_offset == _segs[_seg].Length) { _seg++; _offset = 0; }
        }
        return count == 0;
    }
}

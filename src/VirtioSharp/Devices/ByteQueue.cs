namespace VirtioSharp.Devices;

/// <summary>A growable FIFO of bytes shared between a producer thread and a queue's owner thread (one lock, bulk copies).</summary>
internal sealed class ByteQueue
{
    private readonly object _lock = new();
    private byte[] _buf = new byte[4096];
    private int _head, _count;

    public int Count { get { lock (_lock) return _count; } }

    public void Enqueue(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) return;
        lock (_lock)
        {
            if (_count + data.Length > _buf.Length) Grow(_count + data.Length);
            int tail = (_head + _count) % _buf.Length;
            int first = Math.Min(data.Length, _buf.Length - tail);
            data[..first].CopyTo(_buf.AsSpan(tail));
            data[first..].CopyTo(_buf);
            _count += data.Length;
        }
    }

    /// <summary>Moves up to <paramref name="destination"/>'s length of bytes out; returns how many.</summary>
    public int Dequeue(Span<byte> destination)
    {
        lock (_lock)
        {
            int n = Math.Min(destination.Length, _count);
            int first = Math.Min(n, _buf.Length - _head);
            _buf.AsSpan(_head, first).CopyTo(destination);
            _buf.AsSpan(0, n - first).CopyTo(destination[first..]);
            _head = (_head + n) % _buf.Length;
            _count -= n;
            return n;
        }
    }

    public void Clear()
    {
        lock (_lock) _head = _count = 0;
    }

    private void Grow(int needed)
    {
        var next = new byte[Math.Max(needed, _buf.Length * 2)];
        int first = Math.Min(_count, _buf.Length - _head);
        _buf.AsSpan(_head, first).CopyTo(next);
        _buf.AsSpan(0, _count - first).CopyTo(next.AsSpan(first));
        _buf = next;
        _head = 0;
    }
}

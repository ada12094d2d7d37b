namespace VirtioSharp.Storage;

/// <summary>A fixed-capacity FIFO of slot indices (no allocation after construction); callers provide any locking.</summary>
internal sealed class IndexRing(int capacity)
{
    private readonly int[] _items = new int[Math.Max(capacity, 1)];
    private int _head;

    public int Count { get; private set; }

    public void Push(int item)
    {
        if (Count == _items.Length) throw new InvalidOperationException("index ring overflow");
        _items[(_head + Count) % _items.Length] = item;
        Count++;
    }

    public int Pop()
    {
        int item = _items[_head];
        _head = (_head + 1) % _items.Length;
        Count--;
        return item;
    }
}

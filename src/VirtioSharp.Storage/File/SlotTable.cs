namespace VirtioSharp.Storage;

/// <summary>A queue's <see cref="FileSlot"/>s and a free stack of their indices; touched by the queue's thread only.</summary>
internal sealed class SlotTable
{
    private readonly int[] _free;
    private int _freeCount;

    public SlotTable(int depth)
    {
        Slots = new FileSlot[depth];
        _free = new int[depth];
        for (int i = 0; i < depth; i++) _free[i] = depth - 1 - i;
        _freeCount = depth;
    }

    public FileSlot[] Slots { get; }
    public int Depth => Slots.Length;
    public int InFlight => Slots.Length - _freeCount;

    public int Take()
    {
        if (_freeCount == 0) throw new InvalidOperationException($"more than {Slots.Length} requests in flight (the queue's depth)");
        return _free[--_freeCount];
    }

    public void Return(int slot)
    {
        Slots[slot] = default;   // drop the request's pointers: they are the device's again
        _free[_freeCount++] = slot;
    }
}

namespace VirtioSharp.BlkLoad;

/// <summary>The access pattern of a run.</summary>
internal enum Pattern
{
    RandRead,
    RandWrite,
    SeqRead,
}

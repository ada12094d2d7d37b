namespace VirtioSharp.Memory;

/// <summary>Kind of a memory access, also used as a permission set.</summary>
[Flags]
public enum Access : byte
{
    None = 0,
    Read = 1,
    Write = 2,
    ReadWrite = Read | Write,
}

using System.CommandLine;
using VirtioSharp.Cli;

return CliApp.Run(args, Console.Out, Console.Error);

"""PhoneBook: seeded "First Last:" -> 10-digit number pairs with unique keys and numbers."""

from __future__ import annotations

import random

from memlaw.data.items import MemoryItem
from memlaw.errors import MemlawInputError

FIRST_NAMES = """
Aaron Abigail Adam Adrian Aidan Alan Albert Alexa Alice Alvin Amanda Amber Amy Andre Andrea
Angela Anita Ann Anthony Arthur Ashley Audrey Austin Barbara Benjamin Bernard Beth Betty Bill
Bonnie Brad Brandon Brenda Brian Brittany Bruce Bryan Caleb Calvin Carl Carlos Carmen Carol
Caroline Carrie Catherine Cecil Chad Charles Cheryl Chloe Christian Cindy Claire Clara Clifford
Colin Connie Craig Crystal Curtis Cynthia Dale Dana Daniel Darlene Darren David Dean Deborah
Denise Dennis Derek Diana Diane Dolores Donald Donna Doris Dorothy Douglas Dustin Dylan Earl
Edgar Edith Edward Eileen Elaine Eleanor Elijah Elizabeth Ellen Emily Emma Eric Erica Erin
Ernest Ethan Eugene Evan Evelyn Felix Florence Frances Francis Frank Fred Gabriel Gail Gary
Gavin George Gerald Gina Glenn Gloria Gordon Grace Greg Hannah Harold Harry Hazel Heather Helen
Henry Herbert Holly Howard Hugh Ian Irene Isaac Isabel Ivan Jack Jacob Jane Janet Jason Jasmine
Jeffrey Jennifer Jeremy Jerry Jessica Joan Joel John Jordan Joseph Joyce Judith Julia Julian
Justin Karen Katherine Keith Kelly Kenneth Kevin Kyle Laura Lauren Lawrence Leah Leo Leslie
Lillian Linda Lisa Logan Louis Lucas Lucy Luke Lynn Marcus Margaret Maria Marie Mark Martha
Martin Mary Matthew Megan Melissa Michael Miles Monica Nancy Natalie Nathan Neil Nicole Noah
Norman Oliver Olivia Oscar Owen Pamela Patricia Patrick Paul Paula Peggy Peter Philip Phyllis
Rachel Ralph Randy Raymond Rebecca Regina Richard Rita Robert Robin Roger Ronald Rose Roy Ruby
Russell Ruth Ryan Samuel Sandra Sara Scott Sean Seth Sharon Shawn Sheila Shirley Simon Sophia
Stanley Stella Stephen Steven Susan Sylvia Tara Teresa Terry Theodore Thomas Timothy Tina Todd
Tony Tracy Travis Trevor Tyler Valerie Vanessa Victor Victoria Vincent Virginia Walter Wanda
Warren Wayne Wendy Wesley William Willie Yvonne Zachary Zoe
""".split()  # noqa: SIM905 (a word list reads better as text)

LAST_NAMES = """
Abbott Acosta Adams Aguilar Alexander Allen Alvarez Anderson Andrews Armstrong Arnold Austin
Bailey Baker Baldwin Banks Barber Barker Barnes Barrett Bates Beck Becerra Bell Bennett Berry
Bishop Black Blair Bowman Boyd Bradley Brady Brewer Brooks Brown Bryant Burke Burns Bush Butler
Byrd Caldwell Campbell Carlson Carpenter Carr Carroll Carter Castillo Castro Chambers Chapman
Chavez Clark Cole Coleman Collins Cook Cooper Cox Craig Crawford Cross Cruz Cunningham Curtis
Daniels Davidson Davis Dawson Day Dean Delgado Diaz Dixon Douglas Duncan Dunn Edwards Elliott
Ellis Evans Ferguson Fernandez Fields Fisher Fleming Fletcher Flores Ford Foster Fowler Fox
Francis Franklin Freeman Fuller Garcia Gardner Garrett Gibson Gilbert Gomez Gonzales Goodman
Gordon Graham Grant Gray Green Gregory Griffin Gutierrez Hale Hall Hamilton Hansen Hardy Harper
Harris Harrison Hart Harvey Hawkins Hayes Henderson Henry Hernandez Hicks Hill Hoffman Holland
Holmes Hopkins Howard Howell Hudson Hughes Hunt Hunter Jackson Jacobs James Jenkins Jensen
Johnson Johnston Jones Jordan Keller Kelley Kennedy Kim King Knight Lambert Lane Laramee Larson
Lawrence Lawson Lee Lewis Lindsey Little Long Lopez Lowe Lucas Lynch Marshall Martin Martinez
Mason Matthews May McCarthy McDonald Medina Mendoza Meyer Miles Miller Mills Mitchell Montgomery
Moore Morales Moreno Morgan Morris Morrison Murphy Murray Myers Nelson Newman Nichols Norman
Norris Oliver Olson Ortiz Owens Palmer Parker Patterson Payne Pearson Perez Perkins Perry
Peters Peterson Phillips Pierce Porter Powell Price Quinn Ramirez Ramos Ray Reed Reid Reyes
Reynolds Rice Richards Richardson Riley Rivera Roberts Robertson Robinson Rodriguez Rogers Rose
Ross Russell Ryan Sanchez Sanders Santos Saunders Schmidt Scott Shaw Shelton Simmons Simpson
Sims Smith Snyder Spencer Stanley Stephens Stevens Stewart Stone Sullivan Sutton Taylor Terry
Thomas Thompson Torres Tucker Turner Vargas Vasquez Wagner Walker Wallace Walsh Walters Ward
Warren Washington Watkins Watson Weaver Webb Welch Wells West Wheeler White Williams Willis
Wilson Wood Woods Wright Young
""".split()  # noqa: SIM905 (a word list reads better as text)


def phonebook_items(count: int, *, seed: int = 0) -> list[MemoryItem]:
    """``count`` entries "First Last:" -> a 10-digit number; keys and numbers are all distinct.

    The same seed gives the same book, and a smaller book is a prefix of a larger one, so
    lengths grow by adding entries, as in the reference's nested PB files.
    """
    capacity = len(FIRST_NAMES) * len(LAST_NAMES)
    if count > capacity:
        raise MemlawInputError(f"a PhoneBook holds at most {capacity} distinct names; asked for {count}")
    rng = random.Random(seed)
    names: set[str] = set()
    numbers: set[str] = set()
    items: list[MemoryItem] = []
    while len(items) < count:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        number = str(rng.randrange(10**9, 10**10))
        if name in names or number in numbers:
            continue
        names.add(name)
        numbers.add(number)
        items.append(MemoryItem(key=f"{name}:", value=number))
    return items
